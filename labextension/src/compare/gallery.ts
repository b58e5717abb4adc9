/**
 * The output gallery: one cell's outputs across the selected runs, side by side, from the runs'
 * recorded notebooks, rendered by JupyterLab's rendermime. Recorded outputs are never trusted
 * (no scripts, no untrusted HTML): OutputAreaModel with `trusted: false`.
 */
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';
import type { IOutput } from '@jupyterlab/nbformat';

import { h } from '../dom';
import { compareApi, IGallery } from './api';

export class Gallery extends Panel {
  constructor(rendermime: IRenderMimeRegistry) {
    super();
    this._rendermime = rendermime;
    this.addClass('nbtrack-cmp-gallery');
    this._bar.node.append(
      h('label', { for: this._pickId }, 'Cell '),
      this._picker,
      this._status
    );
    this._picker.id = this._pickId;
    this._picker.className = 'nbtrack-cmp-gallery-cell';
    this._picker.addEventListener('change', () => void this.load(this._picker.value || null));
    this._bar.addClass('nbtrack-cmp-gallery-bar');
    this._grid.addClass('nbtrack-cmp-gallery-grid');
    this.addWidget(this._bar);
    this.addWidget(this._grid);
  }

  /** Show `runs` (ids); keeps the chosen cell when there is one. */
  showRuns(notebook: string, runs: string[]): Promise<void> {
    this._notebook = notebook;
    this._runs = runs;
    return this.load(this._cell);
  }

  async load(cell: string | null): Promise<void> {
    const generation = ++this._generation;
    this._clear();
    if (this._runs.length === 0) {
      this._status.textContent = 'Select runs to see their outputs.';
      this._picker.replaceChildren();
      return;
    }
    this._status.textContent = 'Loading outputs…';
    let gallery: IGallery;
    try {
      gallery = await compareApi.gallery(this._notebook, this._runs, cell);
    } catch (error) {
      if (generation === this._generation) {
        this._status.textContent = String((error as Error).message ?? error).split('\n')[0];
        this._status.classList.add('nbtrack-error');
      }
      return;
    }
    if (generation !== this._generation) {
      return;
    }
    this._status.classList.remove('nbtrack-error');
    this._status.textContent = '';
    this._cell = gallery.cell;
    this._picker.replaceChildren(
      ...gallery.cells.map(c =>
        h(
          'option',
          { value: c.key, selected: c.key === gallery.cell },
          `[${c.index}] ${c.label} (${c.outputs})`
        )
      )
    );
    this._render(gallery);
  }

  private _render(gallery: IGallery): void {
    for (const run of gallery.runs) {
      const column = new Panel();
      column.addClass('nbtrack-cmp-gallery-run');
      column.node.dataset.runId = run.run_id;
      const title = new Widget({
        node: h('div', { class: 'nbtrack-cmp-gallery-title', title: run.run_id }, run.name || run.run_id)
      });
      column.addWidget(title);
      if (run.missing) {
        column.addWidget(
          new Widget({ node: h('div', { class: 'nbtrack-cmp-gallery-missing' }, run.missing) })
        );
      } else {
        const model = new OutputAreaModel({
          values: run.outputs as unknown as IOutput[],
          trusted: false
        });
        column.addWidget(new OutputArea({ model, rendermime: this._rendermime }));
      }
      this._grid.addWidget(column);
    }
  }

  private _clear(): void {
    for (const widget of [...this._grid.widgets]) {
      widget.dispose();
    }
  }

  private _rendermime: IRenderMimeRegistry;
  private _notebook = '';
  private _runs: string[] = [];
  private _cell: string | null = null;
  private _generation = 0;
  private _pickId = `nbtrack-cmp-cell-${Math.random().toString(36).slice(2)}`;
  private _bar = new Widget();
  private _picker = h('select', {});
  private _status = h('span', { class: 'nbtrack-cmp-status', role: 'status' });
  private _grid = new Panel();
}
