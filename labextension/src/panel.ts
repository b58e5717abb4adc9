/**
 * The side panel, nbtrack's quick view: the followed notebook's runs, and in place of that list a
 * run's details (with replay and the run's actions) or the structured diff of two runs. Renders
 * `RunsModel`; user actions call back into it.
 *
 * Keyboard: the list is a listbox with one tab stop (roving tabindex). ArrowUp/Down, Home/End
 * move; Enter opens the details; Space selects for comparing (two runs open their diff); Escape
 * goes back to the list, focus on the same row.
 *
 * Class names here are a contract: the browser tests and users' CSS select on them.
 */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { renderDetails } from './details';
import { h } from './dom';
import { RunsModel } from './model';
import { renderRow } from './rows';
import { renderBrowse } from './browse';
import { renderDiff, renderReplay, replayRunning } from './views';

export const PANEL_ID = 'nbtrack-panel';

export interface IPanelOptions {
  model: RunsModel;
  /** Open a run's recorded notebook as a read-only document. */
  openNotebook: (runId: string) => Promise<void>;
  /** Open the compare view (main area) on a notebook's runs. */
  openCompare?: (notebook: string | null) => void;
  /** Open nbdime's diff of two runs' notebooks in the main area. */
  openNotebookDiff: (a: string, b: string) => void;
  /** Renders a run's Markdown note (Lab's sanitizing renderer); optional. */
  rendermime?: IRenderMimeRegistry | null;
}

export class NbtrackPanel extends Widget {
  constructor(options: IPanelOptions) {
    super();
    this._options = options;
    this._model = options.model;
    this.id = PANEL_ID;
    this.addClass('nbtrack-panel');
    this.title.caption = 'nbtrack runs';
    this.node.append(this._header, this._warningNode, this._listNode, this._bottomNode);
    this._listNode.className = 'nbtrack-list-area';
    this._bottomNode.className = 'nbtrack-bottom';
    this._warningNode.className = 'nbtrack-warning-area';
    this.node.addEventListener('keydown', this._onKeyDown);
    this._model.changed.connect(this._render, this);
    this._render();
  }

  dispose(): void {
    this.node.removeEventListener('keydown', this._onKeyDown);
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

  protected onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    // Opening the panel from its command puts the keyboard in it: on the active row, if any.
    if (!this.node.contains(document.activeElement)) {
      const row = this._activeRow();
      if (row && this._model.view === 'list') {
        row.focus();
      } else {
        this._wantFocus = true; // the list is still loading: focus its row once it is there
      }
    }
  }

  private _onKeyDown = (event: KeyboardEvent): void => {
    if (event.key === 'Escape' && this._model.view !== 'list') {
      const target = event.target as HTMLElement;
      if (target.closest('input, textarea')) {
        return; // an edit's own Escape cancels the edit
      }
      event.preventDefault();
      event.stopPropagation();
      this._back();
    }
  };

  private _back(): void {
    this._focusAfter = this._activeId;
    this._model.back();
  }

  private _render(): void {
    const m = this._model;
    const hadFocus = this._listNode.contains(document.activeElement);
    this._renderHeader();
    this._warningNode.replaceChildren(
      ...(m.listWarning && m.notebook !== null
        ? [h('div', { class: 'nbtrack-warning', role: 'status', title: m.listWarning }, m.listWarning)]
        : [])
    );
    // Re-render a part only when what it shows changed: replay polling must not rebuild the
    // list under the user's mouse.
    const listKey = [m.notebook, m.runs, m.selection, m.listLoading, m.listError, m.listLoaded];
    if (changed(this._listKey, listKey)) {
      this._listKey = listKey;
      this._listNode.replaceChildren(this._renderList());
      const row = this._activeRow();
      if (row && (hadFocus || this._wantFocus) && m.view === 'list') {
        this._wantFocus = false;
        this._listNode.hidden = false;
        row.focus();
      }
    }
    const view = m.view;
    this._listNode.hidden = view !== 'list';
    this._warningNode.hidden = view !== 'list';
    this._bottomNode.hidden = view === 'list';
    const selected = m.selection.length === 1 ? m.selection[0] : null;
    const bottomKey = [m.details, m.details?.loading, m.details?.data, m.diff, m.diff?.loading, m.actionError];
    if (changed(this._bottomKey, bottomKey)) {
      this._bottomKey = bottomKey;
      this._replayKey = [];
      this._replayNode = null;
      this._bottomNode.replaceChildren(...this._renderBottom());
      if (view !== 'list' && !this._bottomNode.contains(document.activeElement)) {
        this._bottomNode.querySelector<HTMLElement>('.nbtrack-back')?.focus();
      }
    }
    if (view === 'list' && this._focusAfter !== null) {
      this._activeId = this._focusAfter;
      this._focusAfter = null;
      this._updateTabStops();
      this._activeRow()?.focus();
    }
    if (selected !== null && this._replayNode) {
      const replay = m.replayOf(selected);
      const replayKey = [replay, replay?.job, replay?.error];
      if (changed(this._replayKey, replayKey)) {
        this._replayKey = replayKey;
        this._replayNode.replaceChildren(...renderReplay(replay));
        const button = this._bottomNode.querySelector<HTMLButtonElement>('.nbtrack-replay-button');
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
        'aria-label': 'Refresh the list of runs',
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
    compare.addEventListener('click', () => this._options.openCompare?.(notebook));
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
      return h('div', { class: 'nbtrack-empty nbtrack-no-notebook' }, 'Open a notebook to see its runs');
    }
    if (m.listError !== null) {
      return h('div', { class: 'nbtrack-error', role: 'alert', title: m.listError }, m.listError);
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
    if (!m.runs.some(r => r.run_id === this._activeId)) {
      this._activeId = m.runs[0].run_id;
    }
    const list = h(
      'div',
      {
        class: 'nbtrack-run-list',
        role: 'listbox',
        'aria-multiselectable': 'true',
        'aria-label': 'Tracked runs: arrows move, Enter opens, Space selects to compare'
      },
      m.runs.map(run =>
        renderRow(run, m, run.run_id === this._activeId, id => (this._activeId = id))
      )
    );
    list.addEventListener('keydown', this._onListKey);
    const footer = [list, renderBrowse(m.browse)];
    if (m.hasMore) {
      const more = h(
        'button',
        { class: 'jp-Button nbtrack-load-more', disabled: m.listLoading },
        m.listLoading ? 'Loading…' : 'Load more'
      );
      more.addEventListener('click', () => void m.loadMore());
      footer.splice(1, 0, more);
    }
    return h('div', {}, ...footer);
  }

  private _onListKey = (event: KeyboardEvent): void => {
    const rows = [...this._listNode.querySelectorAll<HTMLElement>('.nbtrack-run-row')];
    const row = (event.target as HTMLElement).closest<HTMLElement>('.nbtrack-run-row');
    if (!row || rows.length === 0) {
      return;
    }
    const index = rows.indexOf(row);
    const runId = row.dataset.runId ?? '';
    let next = -1;
    switch (event.key) {
      case 'ArrowDown':
        next = Math.min(index + 1, rows.length - 1);
        break;
      case 'ArrowUp':
        next = Math.max(index - 1, 0);
        break;
      case 'Home':
        next = 0;
        break;
      case 'End':
        next = rows.length - 1;
        break;
      case 'Enter':
        event.preventDefault();
        this._activeId = runId;
        this._model.select(runId);
        return;
      case ' ':
        event.preventDefault();
        this._activeId = runId;
        this._model.toggle(runId);
        return;
      default:
        return;
    }
    event.preventDefault();
    this._activeId = rows[next].dataset.runId ?? null;
    this._updateTabStops();
    rows[next].focus();
    rows[next].scrollIntoView({ block: 'nearest' });
  };

  private _activeRow(): HTMLElement | null {
    if (this._activeId === null) {
      return null;
    }
    return this._listNode.querySelector<HTMLElement>(
      `.nbtrack-run-row[data-run-id="${CSS.escape(this._activeId)}"]`
    );
  }

  private _updateTabStops(): void {
    for (const row of this._listNode.querySelectorAll<HTMLElement>('.nbtrack-run-row')) {
      row.tabIndex = row.dataset.runId === this._activeId ? 0 : -1;
    }
  }

  private _renderBottom(): Node[] {
    const m = this._model;
    if (m.view === 'list') {
      return [];
    }
    const back = h(
      'button',
      { class: 'jp-Button nbtrack-back', title: 'Back to the list of runs (Escape)' },
      '← Runs'
    );
    back.addEventListener('click', () => this._back());
    const bar = h('div', { class: 'nbtrack-back-bar' }, back);
    if (m.details) {
      const rendered = renderDetails(m.details, m.selection[0], {
        model: m,
        openNotebook: this._options.openNotebook,
        rendermime: this._options.rendermime ?? null
      });
      this._replayNode = rendered.replayNode;
      return [bar, rendered.node];
    }
    if (m.diff) {
      const [a, b] = [m.diff.data?.a.run_id, m.diff.data?.b.run_id];
      if (a && b) {
        const nbdiff = h(
          'button',
          {
            class: 'jp-Button nbtrack-open-nbdiff',
            title: "Both runs' notebooks side by side, with outputs (nbdime), in the main area"
          },
          'Notebook diff ↗'
        );
        nbdiff.addEventListener('click', () => this._options.openNotebookDiff(a, b));
        bar.append(nbdiff);
      }
      return [bar, renderDiff(m.diff)];
    }
    return [];
  }

  private _options: IPanelOptions;
  private _model: RunsModel;
  private _header = document.createElement('div');
  private _warningNode = document.createElement('div');
  private _listNode = document.createElement('div');
  private _bottomNode = document.createElement('div');
  private _replayNode: HTMLElement | null = null;
  private _listKey: unknown[] = [];
  private _bottomKey: unknown[] = [];
  private _replayKey: unknown[] = [];
  /** The row that holds the list's tab stop (and focus, when the list has it). */
  private _activeId: string | null = null;
  /** Focus the active row once the list has loaded (the panel was opened by its command). */
  private _wantFocus = false;
  /** The row to focus once the list is back. */
  private _focusAfter: string | null = null;
}

function changed(before: unknown[], after: unknown[]): boolean {
  return before.length !== after.length || before.some((v, i) => v !== after[i]);
}
