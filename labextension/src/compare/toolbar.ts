/**
 * The compare view's controls: scope, search, filter (MLflow syntax), nbtrack's own filters,
 * the column chooser and CSV export. Every toggle is a real button with `aria-pressed`.
 */
import { Widget } from '@lumino/widgets';

import { h } from '../dom';
import { downloadCsv } from './api';
import { CompareModel, FIXED_COLUMNS } from './model';

const DEBOUNCE_MS = 300;

export class CompareToolbar extends Widget {
  constructor(model: CompareModel) {
    super();
    this._model = model;
    this.addClass('nbtrack-cmp-toolbar');
    this._search.addEventListener('input', () => {
      clearTimeout(this._timer);
      this._timer = window.setTimeout(() => model.update({ q: this._search.value }), DEBOUNCE_MS);
    });
    this._filter.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        model.update({ filter: this._filter.value });
      }
    });
    this._filter.addEventListener('change', () => {
      if (this._filter.value !== model.query.filter) {
        model.update({ filter: this._filter.value });
      }
    });
    this._scope.append(this._toggle('scope', 'This notebook', 'Show the runs of this notebook or of the whole project'));
    this._toggles.append(
      this._toggle('reproduced', 'Reproduced', 'Only runs whose last replay REPRODUCED'),
      this._toggle('clean_git', 'Clean git', 'Only runs made from committed code'),
      this._toggle('same_data', 'Same data', 'Only runs on the same data version as the (first) selected run'),
      this._toggle('archived', 'Archived', 'Show archived runs instead of active ones')
    );
    this.node.append(
      h(
        'div',
        { class: 'nbtrack-cmp-row1' },
        this._scope,
        this._search,
        h('div', { class: 'nbtrack-cmp-filter-box' }, this._filter, this._filterError),
        this._toggles,
        this._columnsButton,
        this._csv,
        this._status
      ),
      this._chooser
    );
    this.node.addEventListener('click', this._onClick);
    this._chooser.addEventListener('change', this._onPick);
    model.changed.connect(this.render, this);
    this.render();
  }

  dispose(): void {
    this._model.changed.disconnect(this.render, this);
    super.dispose();
  }

  render(): void {
    const m = this._model;
    const q = m.query;
    const selectedOne = m.selected.size >= 1;
    // The buttons stay the same elements (focus stays on the one the user pressed).
    this._set('scope', q.scope === 'project', q.scope === 'project' ? 'Project' : 'This notebook');
    this._set('reproduced', q.only.includes('reproduced'));
    this._set('clean_git', q.only.includes('clean_git'));
    this._set('same_data', q.sameData !== null, undefined, !selectedOne && q.sameData === null);
    this._set('archived', q.archived);
    this._filterError.textContent = m.filterError ?? '';
    this._filter.setAttribute('aria-invalid', m.filterError ? 'true' : 'false');
    const parts = [`${m.total} run${m.total === 1 ? '' : 's'}`];
    if (m.loading) {
      parts.push('loading…');
    }
    this._status.textContent = parts.join(' · ');
    this._status.title = m.store;
    this._columnsButton.setAttribute('aria-expanded', this._chooserOpen ? 'true' : 'false');
    this._chooser.hidden = !this._chooserOpen;
    if (this._chooserOpen) {
      this._renderChooser();
    }
  }

  private _toggle(key: string, label: string, title: string): HTMLButtonElement {
    const button = h(
      'button',
      { class: 'jp-Button nbtrack-cmp-toggle', 'data-toggle': key, 'aria-pressed': 'false', title },
      label
    );
    this._buttons.set(key, button);
    return button;
  }

  private _set(key: string, pressed: boolean, label?: string, disabled = false): void {
    const button = this._buttons.get(key);
    if (!button) {
      return;
    }
    button.setAttribute('aria-pressed', pressed ? 'true' : 'false');
    button.disabled = disabled;
    if (label !== undefined) {
      button.textContent = label;
    }
  }

  private _renderChooser(): void {
    const m = this._model;
    const shown = new Set(m.shown().map(c => c.key));
    const mode = (key: string, label: string) =>
      h(
        'button',
        { class: 'jp-Button nbtrack-cmp-mode', 'data-mode': key, 'aria-pressed': m.columnMode === key ? 'true' : 'false' },
        label
      );
    const boxes = m.columns
      .filter(c => !FIXED_COLUMNS.includes(c.key))
      .map(c => {
        const box = h('input', { type: 'checkbox', 'data-key': c.key });
        box.checked = shown.has(c.key);
        return h('label', { class: 'nbtrack-cmp-pick', title: c.key }, box, ` ${c.label}`, c.varies ? '' : ' (same)');
      });
    this._chooser.replaceChildren(
      h('div', { class: 'nbtrack-cmp-modes' }, mode('varying', 'Varying only'), mode('all', 'All columns')),
      h('div', { class: 'nbtrack-cmp-picks' }, boxes)
    );
  }

  private _onPick = (event: Event): void => {
    const box = event.target as HTMLInputElement;
    if (!box.dataset.key) {
      return;
    }
    const picked = [...this._chooser.querySelectorAll<HTMLInputElement>('input[data-key]')]
      .filter(b => b.checked)
      .map(b => b.dataset.key as string);
    this._model.setColumnMode('pick', picked);
  };

  private _onClick = (event: MouseEvent): void => {
    const target = (event.target as HTMLElement).closest<HTMLElement>('button');
    if (!target) {
      return;
    }
    const m = this._model;
    const q = m.query;
    const key = target.dataset.toggle;
    if (key === 'scope') {
      m.update({ scope: q.scope === 'project' ? 'notebook' : 'project' });
    } else if (key === 'reproduced' || key === 'clean_git') {
      const only = q.only.includes(key) ? q.only.filter(k => k !== key) : [...q.only, key];
      m.update({ only });
    } else if (key === 'same_data') {
      m.update({ sameData: q.sameData === null ? (m.selectedIds()[0] ?? null) : null });
    } else if (key === 'archived') {
      m.update({ archived: !q.archived });
    } else if (target.dataset.mode) {
      m.setColumnMode(target.dataset.mode as 'varying' | 'all');
    } else if (target === this._columnsButton) {
      this._chooserOpen = !this._chooserOpen;
      if (this._chooserOpen && m.columnMode === 'varying') {
        // Picking needs every column: start from what is shown now.
        m.setColumnMode('pick', m.shown().map(c => c.key));
      }
      this.render();
    } else if (target === this._csv) {
      const keys = m.shown().map(c => c.key);
      downloadCsv(m.query, keys).catch(error => {
        this._status.textContent = String((error as Error).message ?? error).split('\n')[0];
      });
    }
  };

  private _model: CompareModel;
  private _timer = 0;
  private _chooserOpen = false;
  private _buttons = new Map<string, HTMLButtonElement>();
  private _scope = h('span', { class: 'nbtrack-cmp-scope' });
  private _search = h('input', {
    type: 'search',
    class: 'nbtrack-cmp-search',
    placeholder: 'Search name, id, params, tags',
    'aria-label': 'Search runs'
  });
  private _filter = h('input', {
    type: 'text',
    class: 'nbtrack-cmp-filter',
    placeholder: "Filter: params.lr = '0.01' and metrics.loss < 0.5",
    'aria-label': 'Filter runs (MLflow search syntax, Enter to apply)'
  });
  private _filterError = h('div', { class: 'nbtrack-cmp-filter-error', role: 'alert' });
  private _toggles = h('span', { class: 'nbtrack-cmp-toggles' });
  private _columnsButton = h(
    'button',
    { class: 'jp-Button nbtrack-cmp-columns', title: 'Choose the columns', 'aria-haspopup': 'true' },
    'Columns…'
  );
  private _csv = h(
    'button',
    { class: 'jp-Button nbtrack-cmp-csv', title: 'Download every matching run as CSV (shown columns)' },
    'Export CSV'
  );
  private _status = h('span', { class: 'nbtrack-cmp-status', role: 'status' });
  private _chooser = h('div', { class: 'nbtrack-cmp-chooser' });
}
