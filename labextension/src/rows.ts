/**
 * One run of the panel's list: a listbox option with its checkbox (compare), name (ellipsised,
 * full text in `title`), status, start, duration, commit, first metrics in tabular figures, badges
 * and, for a pending upload, what it means. Class names are part of the panel's contract.
 */
import { IRunRow } from './api';
import { fmt, h } from './dom';
import { RunsModel } from './model';
import { renderBadges } from './views';

const METRICS_IN_ROW = 3;

/**
 * @param active - whether the row holds the list's one tab stop
 * @param onActive - told the run whose row the user acted on (it becomes the active row)
 */
export function renderRow(
  run: IRunRow,
  m: RunsModel,
  active: boolean,
  onActive: (runId: string) => void
): HTMLElement {
  const selected = m.selection.includes(run.run_id);
  const name = run.name || run.run_id.slice(0, 8);
  const checkbox = h('input', {
    type: 'checkbox',
    class: 'nbtrack-run-select',
    title: 'Select to compare (two runs)',
    tabindex: -1,
    'aria-label': `select run ${name} to compare`
  });
  checkbox.checked = selected;
  checkbox.addEventListener('click', event => {
    event.stopPropagation();
    onActive(run.run_id);
    m.toggle(run.run_id);
  });
  const metrics = Object.entries(run.metrics ?? {}).slice(0, METRICS_IN_ROW);
  const row = h(
    'div',
    {
      class: 'nbtrack-run-row' + (selected ? ' nbtrack-selected' : ''),
      'data-run-id': run.run_id,
      role: 'option',
      'aria-selected': selected ? 'true' : 'false',
      'aria-label': `${name}, ${run.status}, ${run.start}`,
      tabindex: active ? 0 : -1,
      title: 'Click or Enter: details · Ctrl/Shift-click, checkbox or Space: compare two runs'
    },
    checkbox,
    h(
      'div',
      { class: 'nbtrack-run-main' },
      h(
        'div',
        { class: 'nbtrack-run-title' },
        h('span', { class: 'nbtrack-run-name', title: `${run.name ?? ''} (${run.run_id})` }, name),
        h('span', { class: `nbtrack-status nbtrack-status-${run.status}` }, run.status)
      ),
      h(
        'div',
        { class: 'nbtrack-run-meta' },
        h('span', { class: 'nbtrack-run-start' }, run.start),
        h('span', { class: 'nbtrack-run-duration nbtrack-num' }, run.duration),
        run.commit
          ? h('span', { class: 'nbtrack-run-commit', title: `git commit ${run.commit}` }, run.commit)
          : null
      ),
      metrics.length
        ? h(
            'div',
            { class: 'nbtrack-run-metrics' },
            metrics.map(([key, value]) =>
              h(
                'span',
                { class: 'nbtrack-metric', 'data-name': key, title: `${key} = ${String(value)}` },
                h('span', { class: 'nbtrack-metric-name' }, key),
                ' ',
                h('span', { class: 'nbtrack-num' }, fmt(value))
              )
            )
          )
        : null,
      renderBadges(run),
      run.pending_upload && run.upload_note
        ? h('div', { class: 'nbtrack-upload-note', title: run.upload_note }, run.upload_note)
        : null
    )
  );
  row.addEventListener('click', event => {
    onActive(run.run_id);
    if (event.ctrlKey || event.metaKey || event.shiftKey) {
      m.toggle(run.run_id);
    } else {
      m.select(run.run_id);
    }
  });
  return row;
}
