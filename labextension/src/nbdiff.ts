/**
 * Two runs' notebooks diffed with their outputs, in the main area: nbdime's own diff widgets
 * (`NotebookDiffModel` + `NotebookDiffWidget`) fed by `GET nbdiff` (nbdime's Python diff, execution
 * counts and metadata ignored). A toolbar chooses which recording each side shows (saved / live /
 * history) and hides unchanged cells.
 *
 * Class names are a contract: the browser test selects on them.
 */
import type * as nbformat from '@jupyterlab/nbformat';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';
import type { IDiffEntry } from 'nbdime/lib/diff/diffentries';
import { NotebookDiffModel } from 'nbdime/lib/diff/model';
import { NotebookDiffWidget } from 'nbdime/lib/diff/widget';

import { api, INbDiff, NotebookKind } from './api';
import { h } from './dom';

const KINDS: NotebookKind[] = ['saved', 'live', 'history'];
const KIND_LABELS: Record<NotebookKind, string> = {
  saved: 'saved notebook',
  live: 'live editor content',
  history: 'executed history'
};

export class NotebookDiffView extends Panel {
  constructor(
    readonly a: string,
    readonly b: string,
    private _notebook: string | null,
    private _rendermime: IRenderMimeRegistry
  ) {
    super();
    this.addClass('nbtrack-nbdiff');
    this.addClass('nbtrack-hide-unchanged');
    this.addClass('nbdime-root');
    this.id = `nbtrack-nbdiff-${a.slice(0, 8)}-${b.slice(0, 8)}`;
    this.title.label = `Diff ${a.slice(0, 8)} → ${b.slice(0, 8)}`;
    this.title.closable = true;
    this._bar.addClass('nbtrack-nbdiff-bar');
    this._body.addClass('nbtrack-nbdiff-body');
    this.addWidget(this._bar);
    this.addWidget(this._body);
    void this.load();
  }

  /** Fetch the diff for the chosen sides (null: the server's best recording) and show it. */
  async load(): Promise<void> {
    const generation = ++this._generation;
    this._status(h('div', { class: 'nbtrack-loading' }, 'Diffing the two notebooks…'));
    let data: INbDiff;
    try {
      data = await api.nbdiff(this.a, this.b, this._sides.a, this._sides.b, this._notebook);
    } catch (error) {
      if (generation === this._generation) {
        this._status(h('div', { class: 'nbtrack-error', role: 'alert' }, (error as Error).message));
      }
      return;
    }
    if (generation !== this._generation || this.isDisposed) {
      return;
    }
    this._sides = { a: data.a.kind, b: data.b.kind };
    this._renderBar(data);
    const model = new NotebookDiffModel(
      data.base as unknown as nbformat.INotebookContent,
      data.diff as IDiffEntry[]
    );
    const widget = new NotebookDiffWidget({ model, rendermime: this._rendermime });
    this._clearBody();
    this._body.addWidget(widget);
    await widget.init();
    this.node.dataset.loaded = 'true';
  }

  private _renderBar(data: INbDiff): void {
    const side = (key: 'a' | 'b') => {
      const info = data[key];
      const select = h('select', {
        class: `jp-mod-styled nbtrack-nbdiff-side nbtrack-nbdiff-side-${key}`,
        'aria-label': `recording shown for run ${key}`
      });
      for (const kind of KINDS) {
        const option = h('option', { value: kind }, KIND_LABELS[kind]);
        option.disabled = !data.available[key].includes(kind);
        option.selected = kind === info.kind;
        select.append(option);
      }
      select.addEventListener('change', () => {
        this._sides[key] = select.value as NotebookKind;
        void this.load();
      });
      return h(
        'label',
        { class: 'nbtrack-nbdiff-label', title: `${info.name ?? ''} (${info.run_id})` },
        h('b', {}, `${key} `),
        h('span', { class: 'nbtrack-nbdiff-run' }, info.name || info.run_id.slice(0, 8)),
        ' ',
        select
      );
    };
    const hide = h('input', { type: 'checkbox', class: 'nbtrack-hide-unchanged-toggle' });
    hide.checked = this.hasClass('nbtrack-hide-unchanged');
    hide.addEventListener('change', () => this.toggleClass('nbtrack-hide-unchanged', hide.checked));
    this._bar.node.replaceChildren(
      side('a'),
      h('span', {}, '→'),
      side('b'),
      h('label', { class: 'nbtrack-nbdiff-hide' }, hide, ' hide unchanged cells')
    );
  }

  private _status(node: HTMLElement): void {
    this._clearBody();
    const holder = new Widget({ node });
    this._body.addWidget(holder);
  }

  private _clearBody(): void {
    for (const child of [...this._body.widgets]) {
      child.dispose();
    }
  }

  private _bar = new Widget();
  private _body = new Panel();
  private _sides: { a: NotebookKind | null; b: NotebookKind | null } = { a: null, b: null };
  private _generation = 0;
}
