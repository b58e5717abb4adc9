/**
 * The compare view's state: the query, the pages of rows loaded so far (the table is virtual:
 * pages are fetched as they scroll into view), the selection and the keyboard focus.
 */
import { ISignal, Signal } from '@lumino/signaling';

import {
  CellValue,
  compareApi,
  ICompareColumn,
  IComparePage,
  ICompareQuery,
  ICompareRow
} from './api';

export const PAGE = 100;
/** Columns always shown first, whatever varies. */
export const FIXED_COLUMNS = ['run.name', 'run.status'];

export type ColumnMode = 'varying' | 'all' | 'pick';

export class CompareModel {
  constructor(notebook: string) {
    this.query = {
      notebook,
      scope: 'notebook',
      filter: '',
      q: '',
      sort: null,
      order: 'desc',
      only: [],
      sameData: null,
      columns: 'varying',
      archived: false
    };
  }

  readonly query: ICompareQuery;
  total = 0;
  columns: ICompareColumn[] = [];
  /** Sparse: rows[i] is undefined until its page arrives. */
  rows: Array<ICompareRow | undefined> = [];
  loading = false;
  /** A failed page request (one line); `filterError` when the server refused the filter. */
  error: string | null = null;
  filterError: string | null = null;
  warnings: string[] = [];
  store = '';
  isServer = false;
  columnMode: ColumnMode = 'varying';
  picked: string[] = [];
  /** Selected runs, by id, with the row they were selected from (for charts). */
  readonly selected = new Map<string, ICompareRow>();
  anchor: number | null = null;
  focus = 0;
  /** The table should scroll the focused row into view (once). */
  reveal = false;

  /** Rows or columns changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }
  /** The set of selected runs changed. */
  get selectionChanged(): ISignal<this, void> {
    return this._selectionChanged;
  }

  /** The columns to show, in order. */
  shown(): ICompareColumn[] {
    const byKey = new Map(this.columns.map(c => [c.key, c]));
    const fixed = FIXED_COLUMNS.map(k => byKey.get(k)).filter(Boolean) as ICompareColumn[];
    let rest: ICompareColumn[];
    if (this.columnMode === 'pick') {
      rest = this.picked.map(k => byKey.get(k)).filter(Boolean) as ICompareColumn[];
    } else {
      rest = this.columns.filter(c => this.columnMode === 'all' || c.varies);
    }
    return [...fixed, ...rest.filter(c => !FIXED_COLUMNS.includes(c.key))];
  }

  /** Change the query and reload from the first page. */
  update(change: Partial<ICompareQuery>): void {
    Object.assign(this.query, change);
    void this.reload();
  }

  setColumnMode(mode: ColumnMode, picked?: string[]): void {
    this.columnMode = mode;
    if (picked) {
      this.picked = picked;
    }
    const wanted = mode === 'varying' ? 'varying' : 'all';
    if (wanted !== this.query.columns) {
      this.update({ columns: wanted });
    } else {
      this._changed.emit();
    }
  }

  /** Drop every loaded page and load the first. */
  async reload(): Promise<void> {
    this._generation++;
    this._pending.clear();
    this.rows = [];
    this._ready = this._load(0, this._generation, true);
    await this._ready;
  }

  /** Select these runs (the run card's "Compare"), once the first page is in. */
  async selectRuns(ids: string[]): Promise<void> {
    await this._ready;
    for (const id of ids) {
      const index = this.rows.findIndex(r => r?.run_id === id);
      this.selected.set(id, this.rows[index] ?? { run_id: id, name: id, status: '', values: {} });
      if (index >= 0 && id === ids[0]) {
        this.focus = index;
        this.reveal = true;
      }
    }
    this._selectionChanged.emit();
    this._changed.emit();
  }

  /** Make sure the pages holding rows [start, end] are loaded (or on their way). */
  ensure(start: number, end: number): void {
    for (let page = Math.floor(start / PAGE); page <= Math.floor(end / PAGE); page++) {
      const offset = page * PAGE;
      if (offset < this.total && this.rows[offset] === undefined) {
        void this._load(offset, this._generation, false);
      }
    }
  }

  value(row: ICompareRow, key: string): CellValue {
    if (key === 'run.name') {
      return row.values[key] ?? row.name;
    }
    if (key === 'run.status') {
      return row.values[key] ?? row.status;
    }
    return row.values[key] ?? null;
  }

  // --- selection -------------------------------------------------------------------------------

  /** Toggle row `index`; with `range`, select everything from the anchor to it (shift-click). */
  toggle(index: number, range = false): void {
    const row = this.rows[index];
    if (!row) {
      return;
    }
    if (range && this.anchor !== null) {
      const [a, b] = this.anchor < index ? [this.anchor, index] : [index, this.anchor];
      for (let i = a; i <= b; i++) {
        const r = this.rows[i];
        if (r) {
          this.selected.set(r.run_id, r);
        }
      }
    } else if (this.selected.has(row.run_id)) {
      this.selected.delete(row.run_id);
    } else {
      this.selected.set(row.run_id, row);
    }
    this.anchor = index;
    this.focus = index;
    this._selectionChanged.emit();
    this._changed.emit();
  }

  clearSelection(): void {
    this.selected.clear();
    this.anchor = null;
    this._selectionChanged.emit();
    this._changed.emit();
  }

  selectedIds(): string[] {
    return [...this.selected.keys()];
  }

  private async _load(offset: number, generation: number, first: boolean): Promise<void> {
    if (this._pending.has(offset)) {
      return;
    }
    this._pending.add(offset);
    this.loading = true;
    if (first) {
      this._changed.emit();
    }
    let page: IComparePage;
    try {
      page = await compareApi.page(this.query, offset, PAGE);
    } catch (error) {
      if (generation === this._generation) {
        this._failed(error as Error & { status?: number });
      }
      return;
    } finally {
      this._pending.delete(offset);
    }
    if (generation !== this._generation) {
      return; // an older query's answer
    }
    this._apply(page, offset, first);
  }

  private _failed(error: Error & { status?: number }): void {
    this.loading = false;
    const message = (error.message || String(error)).split('\n')[0];
    if (error.status === 400) {
      this.filterError = message;
    } else {
      this.error = message;
    }
    if (this.rows.length === 0) {
      this.total = 0;
    }
    this._changed.emit();
  }

  private _apply(page: IComparePage, offset: number, first: boolean): void {
    this.loading = false;
    this.error = null;
    this.filterError = null;
    this.total = page.total;
    this.warnings = page.warnings ?? [];
    this.store = page.store;
    this.isServer = page.is_server;
    if (first || this.columns.length === 0) {
      this.columns = page.columns;
      this.rows = new Array<ICompareRow | undefined>(page.total);
    }
    page.rows.forEach((row, i) => {
      this.rows[offset + i] = row;
      if (this.selected.has(row.run_id)) {
        this.selected.set(row.run_id, row); // fresher values for the charts
      }
    });
    if (first) {
      this.focus = Math.min(this.focus, Math.max(0, page.total - 1));
    }
    this._changed.emit();
  }

  private _generation = 0;
  private _ready: Promise<void> = Promise.resolve();
  private _pending = new Set<number>();
  private _changed = new Signal<this, void>(this);
  private _selectionChanged = new Signal<this, void>(this);
}
