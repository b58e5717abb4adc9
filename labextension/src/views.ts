/**
 * Renderers of the panel's parts that hold no state: badges, a run's sections, the replay's
 * progress and verdict, and the diff of two runs. Class names are part of the panel's contract.
 */
import { IDiff, IJob, IRunRow } from './api';
import { fmt, fmtDelta, h, section, short, table } from './dom';
import { IRemote, IReplayState } from './model';

export function replayRunning(replay: IReplayState | null): boolean {
  if (!replay || replay.error !== null) {
    return false;
  }
  return replay.job === null || replay.job.state === 'queued' || replay.job.state === 'running';
}

export function renderBadges(run: IRunRow): HTMLElement | null {
  const badges: HTMLElement[] = [];
  if (run.data_status === 'modified' || run.data_status === 'missing') {
    badges.push(
      h(
        'span',
        {
          class: 'nbtrack-badge nbtrack-badge-data',
          title: 'DVC data in the workspace did not match its recorded version'
        },
        `data ${run.data_status}`
      )
    );
  }
  if (run.git_dirty) {
    badges.push(
      h(
        'span',
        { class: 'nbtrack-badge nbtrack-badge-dirty', title: 'uncommitted code at the start' },
        'uncommitted code'
      )
    );
  }
  if (run.out_of_order) {
    badges.push(
      h(
        'span',
        {
          class: 'nbtrack-badge nbtrack-badge-order',
          title: 'cells were executed out of order'
        },
        'out of order'
      )
    );
  }
  if (run.pending_upload) {
    badges.push(
      h(
        'span',
        {
          class: 'nbtrack-badge nbtrack-badge-pending',
          title:
            run.upload_note ??
            (run.upload_error
              ? `not on the tracking server yet: ${run.upload_error}; \`nbtrack sync\` uploads it`
              : 'kept in the local spool until it is uploaded to the tracking server')
        },
        'pending upload'
      )
    );
  }
  if (run.replay_of) {
    const verdict = run.replay_verdict ?? '';
    badges.push(
      h(
        'span',
        {
          class: `nbtrack-badge nbtrack-badge-replay nbtrack-verdict-${verdict || 'none'}`,
          title: `replay of ${run.replay_of}`
        },
        verdict ? `replay: ${verdict}` : 'replay'
      )
    );
  }
  return badges.length ? h('div', { class: 'nbtrack-badges' }, badges) : null;
}

export function keyValues(values: Record<string, unknown> | null | undefined): HTMLElement | null {
  const entries = Object.entries(values ?? {});
  if (entries.length === 0) {
    return null;
  }
  return h(
    'dl',
    { class: 'nbtrack-kv' },
    entries.flatMap(([key, value]) => [
      h('dt', { title: key }, key),
      h('dd', { title: fmt(value), class: typeof value === 'number' ? 'nbtrack-num' : null }, short(value))
    ])
  );
}

export function renderData(data: Array<Record<string, unknown>> | undefined): HTMLElement | null {
  if (!data || data.length === 0) {
    return null;
  }
  return table(
    'nbtrack-data-table',
    ['path', 'hash', 'status'],
    data.map(out => ({
      cells: [
        fmt(out.path),
        h('code', { title: fmt(out.hash) }, short(out.hash)),
        h('span', { class: `nbtrack-data-${fmt(out.status)}` }, fmt(out.status))
      ]
    }))
  );
}

export function renderReplay(replay: IReplayState | null): Node[] {
  if (!replay) {
    return [];
  }
  const nodes: Node[] = [];
  const job = replay.job;
  if (job === null && replay.error === null) {
    nodes.push(progressNode(null));
  } else if (job && (job.state === 'queued' || job.state === 'running')) {
    nodes.push(progressNode(job));
  } else if (job && job.state === 'failed') {
    nodes.push(
      h(
        'div',
        { class: 'nbtrack-error', role: 'alert' },
        `The replay could not run: ${job.error ?? 'unknown error'}`
      )
    );
  } else if (job && job.state === 'done') {
    nodes.push(...renderVerdict(job));
  }
  if (replay.error !== null) {
    nodes.push(h('div', { class: 'nbtrack-error', role: 'alert' }, replay.error));
  }
  return nodes;
}

function progressNode(job: IJob | null): HTMLElement {
  const done = job?.progress?.done ?? 0;
  const total = job?.progress?.total ?? 0;
  const bar = h('progress', { class: 'nbtrack-progress-bar' });
  if (total > 0) {
    bar.max = total;
    bar.value = done;
  }
  const label =
    job === null
      ? 'Starting the replay…'
      : job.state === 'queued'
        ? 'Replay queued…'
        : total > 0
          ? `cell ${done} / ${total}`
          : 'Preparing the workspace…';
  return h(
    'div',
    { class: 'nbtrack-replay-progress', 'data-done': done, 'data-total': total },
    bar,
    h('span', { class: 'nbtrack-progress-label' }, label)
  );
}

export function renderVerdict(job: IJob): Node[] {
  const verdict = job.verdict ?? job.result?.verdict ?? 'FAILED';
  const result = job.result;
  const nodes: Node[] = [
    h(
      'div',
      { class: `nbtrack-verdict nbtrack-verdict-${verdict}`, 'data-verdict': verdict },
      verdict
    )
  ];
  if (result?.message) {
    nodes.push(h('p', { class: 'nbtrack-verdict-message' }, result.message));
  }
  if (verdict === 'DIVERGED' && result) {
    const metrics = (result.metrics ?? []).filter(r => !r.ok);
    if (metrics.length) {
      nodes.push(
        table(
          'nbtrack-diverged-metrics',
          ['metric', 'recorded', 'replayed', 'difference'],
          metrics.map(r => ({
            cells: [r.name, fmt(r.original), fmt(r.replayed), fmtDelta(r.difference)],
            attrs: { 'data-name': r.name }
          }))
        )
      );
    }
    const params = (result.params ?? []).filter(r => !r.ok);
    if (params.length) {
      nodes.push(
        table(
          'nbtrack-diverged-params',
          ['parameter', 'recorded', 'replayed'],
          params.map(r => ({ cells: [r.name, fmt(r.original), fmt(r.replayed)] }))
        )
      );
    }
    const cells = (result.cell_outputs ?? []).filter(r => !r.ok);
    if (cells.length) {
      nodes.push(
        table(
          'nbtrack-diverged-cells',
          ['cell', 'first line', 'what differs'],
          cells.map(r => ({
            cells: [String(r.cell), r.source_head, r.detail],
            attrs: { 'data-cell': String(r.cell) }
          }))
        )
      );
    }
  }
  if (verdict === 'FAILED' && result?.failure) {
    const f = result.failure;
    nodes.push(
      h(
        'div',
        { class: 'nbtrack-failure' },
        h(
          'div',
          {},
          f.cell !== null ? `Cell ${f.cell}` : 'A cell',
          f.execution_count !== null ? ` [${f.execution_count}]` : '',
          ' raised ',
          h('code', {}, `${f.ename ?? 'an error'}: ${f.evalue ?? ''}`)
        ),
        f.source_head ? h('pre', {}, f.source_head) : null
      )
    );
  }
  if (verdict === 'CANNOT_REPLAY' && result?.risks?.length) {
    nodes.push(h('ul', { class: 'nbtrack-reasons' }, result.risks.map(r => h('li', {}, r))));
  }
  if (job.report && verdict !== 'REPRODUCED') {
    const details = h('details', { class: 'nbtrack-report' }, h('summary', {}, 'Full report'));
    details.append(h('pre', {}, job.report));
    nodes.push(details);
  }
  return nodes;
}

export function renderDiff(remote: IRemote<IDiff>): HTMLElement {
  const node = h('div', { class: 'nbtrack-diff' });
  if (remote.loading) {
    node.append(h('div', { class: 'nbtrack-loading' }, 'Comparing the two runs…'));
    return node;
  }
  if (remote.error !== null || remote.data === null) {
    node.append(h('div', { class: 'nbtrack-error', role: 'alert' }, remote.error ?? ''));
    return node;
  }
  const d = remote.data;
  const side = (s: { run_id: string; name: string | null }) =>
    h(
      'span',
      { class: 'nbtrack-diff-side', title: s.run_id },
      s.name ? `${s.name} ` : '',
      h('code', {}, s.run_id.slice(0, 8))
    );
  node.setAttribute('data-a', d.a.run_id);
  node.setAttribute('data-b', d.b.run_id);
  node.append(
    h('div', { class: 'nbtrack-diff-head' }, h('b', {}, 'a '), side(d.a), ' → ', h('b', {}, 'b '), side(d.b)),
    section(
      'nbtrack-diff-params',
      'Parameters',
      d.params.length
        ? table(
            'nbtrack-diff-table',
            ['name', 'a', 'b'],
            d.params.map(r => ({
              cells: [r.name, fmt(r.a), fmt(r.b)],
              attrs: { class: 'nbtrack-diff-param', 'data-name': r.name }
            }))
          )
        : null
    ),
    section(
      'nbtrack-diff-metrics',
      'Metrics',
      d.metrics.length
        ? table(
            'nbtrack-diff-table',
            ['name', 'a', 'b', 'b − a'],
            d.metrics.map(r => ({
              cells: [r.name, fmt(r.a), fmt(r.b), fmtDelta(r.difference)],
              attrs: { class: 'nbtrack-diff-metric', 'data-name': r.name }
            }))
          )
        : null
    ),
    section('nbtrack-diff-environment', 'Environment', renderEnvDiff(d.environment)),
    section(
      'nbtrack-diff-data',
      'Data',
      d.data.length
        ? table(
            'nbtrack-diff-table',
            ['path', 'a', 'b'],
            d.data.map(r => ({
              cells: [r.path, dataSide(r.a), dataSide(r.b)],
              attrs: { class: 'nbtrack-diff-datum', 'data-name': r.path }
            }))
          )
        : null
    ),
    section(
      'nbtrack-diff-git',
      'Git',
      d.git && Object.keys(d.git).length
        ? table(
            'nbtrack-diff-table',
            ['', 'a', 'b'],
            Object.entries(d.git).map(([key, v]) => ({
              cells: [key, short(v.a), short(v.b)],
              attrs: { 'data-name': key }
            }))
          )
        : null
    ),
    section(
      'nbtrack-diff-cells',
      'Code cells',
      d.cells.length
        ? h(
            'div',
            {},
            d.cells.map(c =>
              h(
                'div',
                { class: `nbtrack-diff-cell nbtrack-cell-${c.op}` },
                h(
                  'div',
                  { class: 'nbtrack-diff-cell-title' },
                  c.op === 'changed'
                    ? `cell ${c.a_cell} changed`
                    : c.op === 'added'
                      ? `cell ${c.b_cell} added in b`
                      : `cell ${c.a_cell} removed in b`
                ),
                h(
                  'pre',
                  {},
                  c.op === 'changed'
                    ? (c.diff ?? '').split('\n').slice(2).join('\n')
                    : (c.source ?? '')
                )
              )
            )
          )
        : null
    )
  );
  return node;
}

function dataSide(x: { hash: string | null; status: string | null } | null): string {
  return x === null ? 'absent' : `${(x.hash ?? '?').slice(0, 10)} (${x.status ?? '?'})`;
}

function renderEnvDiff(env: IDiff['environment']): HTMLElement | null {
  if (!env.available) {
    return h('p', { class: 'nbtrack-none' }, env.reason ?? 'not comparable');
  }
  const rows: Array<{ cells: string[] }> = [];
  if (env.python) {
    rows.push({ cells: ['python', env.python.a, env.python.b] });
  }
  for (const r of env.changed ?? []) {
    rows.push({ cells: [r.name, fmt(r.a), fmt(r.b)] });
  }
  for (const r of env.added ?? []) {
    rows.push({ cells: [r.name, 'absent', fmt(r.version)] });
  }
  for (const r of env.removed ?? []) {
    rows.push({ cells: [r.name, fmt(r.version), 'absent'] });
  }
  return rows.length ? table('nbtrack-diff-table nbtrack-diff-env', ['package', 'a', 'b'], rows) : null;
}
