/**
 * The compare view: toolbar, virtual runs table, and what the selection shows (actions, charts,
 * gallery), in one main-area widget per notebook.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

import { h } from '../dom';
import { CompareModel } from './model';
import { SelectionView } from './selection';
import { RunsTable } from './table';
import { CompareToolbar } from './toolbar';

export class CompareView extends Panel {
  constructor(notebook: string, rendermime: IRenderMimeRegistry) {
    super();
    this.model = new CompareModel(notebook);
    this.addClass('nbtrack-compare');
    this.node.dataset.notebook = notebook;
    const notices = new Widget({ node: h('div', { class: 'nbtrack-cmp-notices' }) });
    this.addWidget(new CompareToolbar(this.model));
    this.addWidget(notices);
    this.addWidget(new RunsTable(this.model));
    this.addWidget(new SelectionView(this.model, rendermime));
    // Server warnings and failed requests: one line each, never a raw exception.
    this.model.changed.connect(() => {
      const m = this.model;
      const lines = [...(m.error ? [m.error] : []), ...m.warnings];
      notices.node.replaceChildren(
        ...lines.map((line, i) =>
          h('div', { class: i === 0 && m.error ? 'nbtrack-error' : 'nbtrack-warning', role: 'alert' }, line)
        )
      );
    });
    void this.model.reload();
  }

  readonly model: CompareModel;
}

/** A compare view in a main-area widget titled after the notebook. */
export function createCompareWidget(
  notebook: string,
  rendermime: IRenderMimeRegistry
): MainAreaWidget<CompareView> {
  const content = new CompareView(notebook, rendermime);
  const widget = new MainAreaWidget({ content });
  widget.id = `nbtrack-compare-${notebook.replace(/[^\w-]/g, '_')}`;
  widget.title.label = `Compare: ${notebook.split('/').pop()}`;
  widget.title.caption = `nbtrack: compare the runs of ${notebook}`;
  widget.title.closable = true;
  widget.addClass('nbtrack-compare-widget');
  return widget;
}
