/**
 * The side panel: the followed notebook's runs, the selected run's details (with replay), or the
 * diff of two selected runs. Renders `RunsModel`; user actions call back into it.
 *
 * Class names here are a contract: the browser test and users' CSS select on them.
 */
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { IRunDetail, IRunRow } from './api';
import { fmt, h, section } from './dom';
import { IRemote, RunsModel } from './model';
import {
  keyValues,
  renderBadges,
  renderData,
  renderDiff,
  renderReplay,
  replayRunning
} from './views';

export const PANEL_ID = 'nbtrack-panel';
const METRICS_IN_ROW = 3;

export interface IPanelOptions {
  model: RunsModel;
  /** Open a run's recorded notebook as a read-only document. */
  openNotebook: (runId: string) => Promise<void>;
  /** Open the compare view (main area) on a notebook's runs. */
  openCompare?: (notebook: string | null) => void;
}

export class NbtrackPanel extends Widget {
  constructor(options: IPanelOptions) {
    super();
    this._model = options.model;
    this._openNotebook = options.openNotebook;
    this._openCompare = options.openCompare;
    this.id = PANEL_ID;
    this.addClass('nbtrack-panel');
    this.title.caption = 'nbtrack runs';
    this.node.append(this._header, this._listNode, this._bottomNode);
    this._listNode.className = 'nbtrack-list-area';
    this._bottomNode.className = 'nbtrack-bottom';
    this._model.changed.connect(this._render, this);
    this._render();
  }

  dispose(): void {
    this._model.changed.disconnect(this._render, this);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._model.visible = true;
    void this._model.refresh();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this._model.visible = false;
  }

  private _render(): void {
    const m = this._model;
    this._renderHeader();
    // Re-render a part only when what it shows changed: replay polling must not rebuild the
    // list under the user's mouse.
    const listKey = [m.notebook, m.runs, m.selection, m.listLoading, m.listError, m.listLoaded];
    if (changed(this._listKey, listKey)) {
      this._listKey = listKey;
      this._listNode.replaceChildren(this._renderList());
    }
    const selected = m.selection.length === 1 ? m.selection[0] : null;
    const bottomKey = [m.details, m.details?.loading, m.diff, m.diff?.loading];
    if (changed(this._bottomKey, bottomKey)) {
      this._bottomKey = bottomKey;
      this._replayKey = [];
      this._replayNode = null;
      this._bottomNode.replaceChildren(...this._renderBottom());
    }
    if (selected !== null && this._replayNode) {
      const replay = m.replayOf(selected);
      const replayKey = [replay, replay?.job, replay?.error];
      if (changed(this._replayKey, replayKey)) {
        this._replayKey = replayKey;
        this._replayNode.replaceChildren(...renderReplay(replay));
        const button = this._bottomNode.querySelector<HTMLButtonElement>(
          '.nbtrack-replay-button'
        );
        if (button) {
          button.disabled = replayRunning(replay);
        }
      }
    }
  }

  private _renderHeader(): void {
    const m = this._model;
    const notebook = m.notebook;
    const refresh = h(
      'button',
      {
        class: 'jp-Button nbtrack-refresh' + (m.listLoading ? ' nbtrack-busy' : ''),
        title: 'Refresh the list of runs',
        disabled: notebook === null
      },
      '⟳'
    );
    refresh.addEventListener('click', () => void m.refresh());
    const compare = h(
      'button',
      { class: 'jp-Button nbtrack-compare-open', title: 'Compare runs (main area)', disabled: notebook === null },
      'Compare'
    );
    compare.addEventListener('click', () => this._openCompare?.(notebook));
    this._header.className = 'nbtrack-header';
    this._header.replaceChildren(
      h('span', { class: 'nbtrack-title' }, 'nbtrack runs'),
      h(
        'span',
        { class: 'nbtrack-notebook', title: notebook ?? '' },
        notebook ? notebook.split('/').pop() : ''
      ),
      compare,
      refresh
    );
  }

  private _renderList(): HTMLElement {
    const m = this._model;
    if (m.notebook === null) {
      return h(
        'div',
        { class: 'nbtrack-empty nbtrack-no-notebook' },
        'Open a notebook to see its runs'
      );
    }
    if (m.listError !== null) {
      return h('div', { class: 'nbtrack-error', role: 'alert' }, m.listError);
    }
    if (!m.listLoaded) {
      return h('div', { class: 'nbtrack-loading' }, 'Loading runs…');
    }
    if (m.runs.length === 0) {
      return h(
        'div',
        { class: 'nbtrack-empty' },
        'No tracked runs yet — run ',
        h('code', {}, '%track start'),
        ' in this notebook'
      );
    }
    const list = h(
      'div',
      { class: 'nbtrack-run-list', role: 'listbox', 'aria-multiselectable': 'true' },
      m.runs.map(run => this._renderRow(run))
    );
    if (!m.hasMore) {
      return list;
    }
    const more = h(
      'button',
      { class: 'jp-Button nbtrack-load-more', disabled: m.listLoading },
      m.listLoading ? 'Loading…' : 'Load more'
    );
    more.addEventListener('click', () => void m.loadMore());
    return h('div', {}, list, more);
  }

  private _renderRow(run: IRunRow): HTMLElement {
    const m = this._model;
    const selected = m.selection.includes(run.run_id);
    const checkbox = h('input', {
      type: 'checkbox',
      class: 'nbtrack-run-select',
      title: 'Select to compare (two runs)',
      'aria-label': `select run ${run.name ?? run.run_id}`
    });
    checkbox.checked = selected;
    checkbox.addEventListener('click', event => {
      event.stopPropagation();
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
        tabindex: 0,
        title: 'Click: details · Ctrl/Shift-click or checkbox: compare two runs'
      },
      checkbox,
      h(
        'div',
        { class: 'nbtrack-run-main' },
        h(
          'div',
          { class: 'nbtrack-run-title' },
          h('span', { class: 'nbtrack-run-name' }, run.name || run.run_id.slice(0, 8)),
          h(
            'span',
            { class: `nbtrack-status nbtrack-status-${run.status}` },
            run.status
          )
        ),
        h(
          'div',
          { class: 'nbtrack-run-meta' },
          h('span', { class: 'nbtrack-run-start' }, run.start),
          h('span', { class: 'nbtrack-run-duration' }, run.duration),
          run.commit
            ? h('span', { class: 'nbtrack-run-commit', title: 'git commit' }, run.commit)
            : null
        ),
        metrics.length
          ? h(
              'div',
              { class: 'nbtrack-run-metrics' },
              metrics.map(([name, value]) =>
                h(
                  'span',
                  { class: 'nbtrack-metric', 'data-name': name },
                  `${name} ${fmt(value)}`
                )
              )
            )
          : null,
        renderBadges(run)
      )
    );
    row.addEventListener('click', event => {
      if (event.ctrlKey || event.metaKey || event.shiftKey) {
        m.toggle(run.run_id);
      } else {
        m.select(run.run_id);
      }
    });
    row.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        m.select(run.run_id);
      }
    });
    return row;
  }

  private _renderBottom(): Node[] {
    const m = this._model;
    if (m.details) {
      return [this._renderDetails(m.details)];
    }
    if (m.diff) {
      return [renderDiff(m.diff)];
    }
    if (m.runs.length > 0) {
      return [
        h(
          'p',
          { class: 'nbtrack-hint' },
          'Select a run for its details and replay; select two to compare them.'
        )
      ];
    }
    return [];
  }

  private _renderDetails(remote: IRemote<IRunDetail>): HTMLElement {
    const runId = this._model.selection[0];
    const node = h('div', { class: 'nbtrack-details', 'data-run-id': runId });
    if (remote.loading) {
      node.append(h('div', { class: 'nbtrack-loading' }, 'Loading the run…'));
      return node;
    }
    if (remote.error !== null || remote.data === null) {
      node.append(h('div', { class: 'nbtrack-error', role: 'alert' }, remote.error ?? ''));
      return node;
    }
    const run = remote.data;
    const replay = h('button', { class: 'jp-Button nbtrack-replay-button' }, 'Replay');
    replay.title = 'Re-execute this run on its recorded code, parameters and data';
    replay.addEventListener('click', () => void this._model.replay(runId));
    const open = h(
      'button',
      { class: 'jp-Button nbtrack-open-notebook' },
      'Open recorded notebook'
    );
    open.addEventListener('click', () => {
      open.disabled = true;
      void this._openNotebook(runId).finally(() => {
        open.disabled = false;
      });
    });
    this._replayNode = h('div', { class: 'nbtrack-replay' });
    node.append(
      h(
        'div',
        { class: 'nbtrack-details-head' },
        h('h2', {}, run.name || run.run_id.slice(0, 8)),
        h('span', { class: `nbtrack-status nbtrack-status-${run.status}` }, run.status),
        h('code', { class: 'nbtrack-run-id', title: 'run id' }, run.run_id)
      ),
      renderBadges(run) ?? '',
      h(
        'div',
        { class: 'nbtrack-actions' },
        replay,
        open,
        run.mlflow_url
          ? h(
              'a',
              {
                class: 'nbtrack-mlflow-link',
                href: run.mlflow_url,
                target: '_blank',
                rel: 'noopener noreferrer'
              },
              'Open in MLflow ↗'
            )
          : null
      ),
      this._replayNode,
      section('nbtrack-params', 'Parameters', keyValues(run.params), 'none'),
      section('nbtrack-metrics', 'Metrics', keyValues(run.metrics), 'none'),
      section('nbtrack-environment', 'Environment', keyValues(run.environment), 'not recorded'),
      section('nbtrack-data', 'Data versions', renderData(run.data), 'no DVC data'),
      section('nbtrack-git', 'Git', keyValues(run.git), 'not a git repository'),
      section('nbtrack-notebook-info', 'Notebook', keyValues(run.notebook_info), 'not recorded'),
      section(
        'nbtrack-artifacts-section',
        'Artifacts',
        run.artifacts && run.artifacts.length
          ? h(
              'ul',
              { class: 'nbtrack-artifacts' },
              run.artifacts.map(a => h('li', {}, a))
            )
          : null,
        'none'
      )
    );
    return node;
  }

  private _model: RunsModel;
  private _openNotebook: (runId: string) => Promise<void>;
  private _openCompare?: (notebook: string | null) => void;
  private _header = document.createElement('div');
  private _listNode = document.createElement('div');
  private _bottomNode = document.createElement('div');
  private _replayNode: HTMLElement | null = null;
  private _listKey: unknown[] = [];
  private _bottomKey: unknown[] = [];
  private _replayKey: unknown[] = [];
}

function changed(before: unknown[], after: unknown[]): boolean {
  return before.length !== after.length || before.some((v, i) => v !== after[i]);
}
