/**
 * The runs table: a real <table> (readable by tests and screen readers) whose body holds only
 * the rows in view, placed by TanStack's headless virtualiser between two spacer rows.
 *
 * Class names are a contract with tests/browser/test_compare.py.
 */
import {
  elementScroll,
  observeElementOffset,
  observeElementRect,
  Virtualizer
} from '@tanstack/virtual-core';
import { Widget } from '@lumino/widgets';

import { fmt, h, short } from '../dom';
import { CellValue, ICompareColumn } from './api';
import { CompareModel } from './model';

export const ROW_HEIGHT = 28;

export class RunsTable extends Widget {
  constructor(model: CompareModel) {
    super();
    this._model = model;
    this.addClass('nbtrack-cmp-table-scroll');
    // The table is the grid and holds the keyboard focus; the focused row is its active descendant.
    this._table.tabIndex = 0;
    this._table.setAttribute('role', 'grid');
    this._table.setAttribute('aria-multiselectable', 'true');
    this._table.setAttribute('aria-label', 'Runs (arrows move, space selects, shift-space extends)');
    this._table.append(this._head, this._body);
    this.node.append(this._table);
    this._virtualizer = new Virtualizer<HTMLElement, HTMLTableRowElement>({
      count: 0,
      getScrollElement: () => this.node,
      estimateSize: () => ROW_HEIGHT,
      overscan: 8,
      scrollToFn: elementScroll,
      observeElementRect,
      observeElementOffset,
      // The sticky header sits above the first row.
      scrollPaddingStart: ROW_HEIGHT + 4,
      onChange: () => this._renderRows()
    });
    this.node.addEventListener('keydown', this._onKey);
    this._body.addEventListener('click', this._onClick);
    this._head.addEventListener('click', this._onHeadClick);
    model.changed.connect(this._onModel, this);
  }

  dispose(): void {
    this._cleanup?.();
    this._model.changed.disconnect(this._onModel, this);
    super.dispose();
  }

  protected onAfterAttach(): void {
    this._cleanup = this._virtualizer._didMount();
    this._virtualizer._willUpdate();
    this._onModel();
  }

  protected onBeforeDetach(): void {
    this._cleanup?.();
    this._cleanup = null;
  }

  private _onModel(): void {
    const m = this._model;
    this._columns = m.shown();
    this._virtualizer.setOptions({ ...this._virtualizer.options, count: m.total });
    this._virtualizer._willUpdate();
    this._table.setAttribute('aria-rowcount', String(m.total + 1));
    this._renderHead();
    if (m.reveal) {
      m.reveal = false;
      this._virtualizer.scrollToIndex(m.focus, { align: 'center' });
    }
    this._renderRows();
  }

  private _renderHead(): void {
    const { sort, order } = this._model.query;
    // Rebuilt on every change: keep the keyboard focus on the header the user was on.
    const active = document.activeElement as HTMLElement | null;
    const focused = this._head.contains(active) ? (active?.dataset.key ?? 'clear') : null;
    const cells = this._columns.map(col => {
      const sorted = sort === col.key;
      const arrow = sorted ? (order === 'asc' ? ' ▲' : ' ▼') : '';
      return h(
        'th',
        {
          class: `nbtrack-cmp-th nbtrack-cmp-group-${col.group}`,
          'data-key': col.key,
          'aria-sort': sorted ? (order === 'asc' ? 'ascending' : 'descending') : null,
          scope: 'col'
        },
        h(
          'button',
          {
            class: 'nbtrack-cmp-sort',
            'data-key': col.key,
            title: `${col.label} (${col.key}) — click to sort`
          },
          col.label,
          arrow
        )
      );
    });
    const count = this._model.selected.size;
    this._head.replaceChildren(
      h(
        'tr',
        { 'aria-rowindex': 1 },
        h(
          'th',
          { class: 'nbtrack-cmp-th nbtrack-cmp-check', scope: 'col' },
          h(
            'button',
            {
              class: 'nbtrack-cmp-clear',
              title: 'Clear the selection',
              'aria-label': 'Clear the selection',
              disabled: count === 0
            },
            count ? String(count) : '·'
          )
        ),
        cells
      )
    );
    if (focused !== null) {
      const selector = focused === 'clear' ? '.nbtrack-cmp-clear' : `.nbtrack-cmp-sort[data-key="${CSS.escape(focused)}"]`;
      this._head.querySelector<HTMLElement>(selector)?.focus();
    }
  }

  private _renderRows(): void {
    const m = this._model;
    const items = this._virtualizer.getVirtualItems();
    const total = this._virtualizer.getTotalSize();
    if (items.length) {
      m.ensure(items[0].index, items[items.length - 1].index);
    }
    const top = items.length ? items[0].start : 0;
    const bottom = items.length ? total - items[items.length - 1].end : 0;
    const span = this._columns.length + 1;
    const spacer = (height: number) =>
      h('tr', { class: 'nbtrack-cmp-spacer', 'aria-hidden': 'true' },
        h('td', { colspan: span, style: `height: ${height}px` }));
    const rows = items.map(item => this._row(item.index));
    this._body.replaceChildren(spacer(top), ...rows, spacer(bottom));
    const focused = rows.find(r => r.classList.contains('nbtrack-cmp-focus'));
    if (focused) {
      this._table.setAttribute('aria-activedescendant', focused.id);
    } else {
      this._table.removeAttribute('aria-activedescendant');
    }
  }

  private _row(index: number): HTMLTableRowElement {
    const m = this._model;
    const row = m.rows[index];
    const focus = index === m.focus ? ' nbtrack-cmp-focus' : '';
    if (!row) {
      return h(
        'tr',
        { class: 'nbtrack-cmp-row nbtrack-cmp-placeholder' + focus, 'data-index': index, id: `${this._prefix}-${index}` },
        h('td', { colspan: this._columns.length + 1 }, '…')
      );
    }
    const selected = m.selected.has(row.run_id);
    const check = h('input', {
      type: 'checkbox',
      class: 'nbtrack-cmp-select',
      tabindex: -1,
      'aria-label': `Select ${row.name || row.run_id}`
    });
    check.checked = selected;
    return h(
      'tr',
      {
        class: 'nbtrack-cmp-row' + focus + (selected ? ' nbtrack-cmp-selected' : ''),
        id: `${this._prefix}-${index}`,
        'data-run-id': row.run_id,
        'data-index': index,
        'aria-rowindex': index + 2,
        'aria-selected': selected ? 'true' : 'false'
      },
      h('td', { class: 'nbtrack-cmp-check' }, check),
      this._columns.map(col => cell(col, m.value(row, col.key)))
    );
  }

  private _moveFocus(index: number): void {
    const m = this._model;
    m.focus = Math.max(0, Math.min(index, m.total - 1));
    this._virtualizer.scrollToIndex(m.focus, { align: 'auto' });
    this._renderRows();
  }

  private _onKey = (event: KeyboardEvent): void => {
    const m = this._model;
    if (event.target !== this._table) {
      return;
    }
    const moves: Record<string, number> = {
      ArrowDown: 1,
      ArrowUp: -1,
      PageDown: 10,
      PageUp: -10,
      Home: -m.total,
      End: m.total
    };
    if (event.key in moves) {
      event.preventDefault();
      this._moveFocus(m.focus + moves[event.key]);
    } else if (event.key === ' ' || event.key === 'Enter') {
      event.preventDefault();
      m.toggle(m.focus, event.shiftKey);
    } else if (event.key === 'Escape') {
      m.clearSelection();
    }
  };

  private _onClick = (event: MouseEvent): void => {
    const tr = (event.target as HTMLElement).closest<HTMLElement>('tr[data-index]');
    if (!tr) {
      return;
    }
    const index = Number(tr.dataset.index);
    const onCheck = (event.target as HTMLElement).classList.contains('nbtrack-cmp-select');
    if (onCheck || event.shiftKey) {
      event.preventDefault();
      this._model.toggle(index, event.shiftKey);
    } else {
      this._model.focus = index;
      this._renderRows();
    }
    this._table.focus({ preventScroll: true });
  };

  private _onHeadClick = (event: MouseEvent): void => {
    const target = event.target as HTMLElement;
    if (target.closest('.nbtrack-cmp-clear')) {
      this._model.clearSelection();
      return;
    }
    const key = target.closest<HTMLElement>('.nbtrack-cmp-sort')?.dataset.key;
    if (!key) {
      return;
    }
    const q = this._model.query;
    // The first click sorts descending (largest on top), the next ascending.
    const order = q.sort === key && q.order === 'desc' ? 'asc' : 'desc';
    this._model.update({ sort: key, order });
  };

  private _model: CompareModel;
  private _columns: ICompareColumn[] = [];
  private _table = h('table', { class: 'nbtrack-cmp-table' });
  private _head = h('thead', { class: 'nbtrack-cmp-head' });
  private _body = h('tbody', {});
  private _virtualizer: Virtualizer<HTMLElement, HTMLTableRowElement>;
  private _cleanup: (() => void) | null = null;
  private _prefix = `nbtrack-cmp-${Math.random().toString(36).slice(2, 8)}`;
}

/** One cell: numbers in tabular figures, booleans as marks, hashes cut short, full text on hover. */
function cell(col: ICompareColumn, value: CellValue): HTMLTableCellElement {
  let text: string;
  if (value === null || value === undefined) {
    text = '';
  } else if (col.kind === 'bool' || typeof value === 'boolean') {
    text = value ? '✓' : '·';
  } else if (col.kind === 'time' && typeof value === 'number') {
    text = new Date(value).toLocaleString();
  } else {
    text = col.group === 'git' || col.group === 'data' ? short(value) : fmt(value);
  }
  const full = value === null || value === undefined ? '' : String(value);
  return h(
    'td',
    {
      class: `nbtrack-cmp-td nbtrack-cmp-${col.kind}`,
      'data-key': col.key,
      title: full
    },
    text
  );
}
