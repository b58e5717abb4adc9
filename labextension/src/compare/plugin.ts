/**
 * The compare view's plugin: the `nbtrack:open-compare` command (palette "Compare runs"), the
 * run card's `button.nbtrack-open-compare`, and one main-area widget per notebook.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { api } from '../api';
import { CompareView, createCompareWidget } from './widget';

export const OPEN_COMPARE = 'nbtrack:open-compare';

export const comparePlugin: JupyterFrontEndPlugin<void> = {
  id: 'nbtrack:compare',
  description: 'Compare tracked runs in the main area: table, charts, output gallery (nbtrack).',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  optional: [INotebookTracker, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    tracker: INotebookTracker | null,
    palette: ICommandPalette | null
  ): void => {
    const views = new Map<string, MainAreaWidget<CompareView>>();
    const contents = app.serviceManager.contents;
    /** The active notebook of the server's own drive (not a recorded one). */
    const current = (): string | null => {
      const path = tracker?.currentWidget?.context.path ?? null;
      return path !== null && contents.driveName(path) === '' ? path : null;
    };

    /** A kernel knows its notebook by absolute path; the server's endpoints want it root-relative. */
    const relative = async (path: string): Promise<string> => {
      if (!path.startsWith('/')) {
        return path;
      }
      const root = (await api.info().catch(() => null))?.root_dir?.replace(/\/+$/, '');
      return root && path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
    };

    const open = async (notebook: string | null, runs: string[]): Promise<void> => {
      notebook = notebook ? await relative(notebook) : null;
      if (!notebook) {
        await showErrorMessage('Compare runs', 'Open a notebook first: the compare view shows its runs.');
        return;
      }
      let widget = views.get(notebook);
      if (!widget || widget.isDisposed) {
        widget = createCompareWidget(notebook, rendermime);
        views.set(notebook, widget);
        widget.disposed.connect(() => views.delete(notebook));
        app.shell.add(widget, 'main');
      }
      app.shell.activateById(widget.id);
      if (runs.length) {
        await widget.content.model.selectRuns(runs);
      }
    };

    app.commands.addCommand(OPEN_COMPARE, {
      label: 'Compare runs',
      caption: "Compare the tracked runs of the notebook (or the project's): table, charts, outputs",
      execute: args => {
        const notebook = typeof args.notebook === 'string' && args.notebook ? args.notebook : current();
        const runs = Array.isArray(args.runs) ? (args.runs as unknown[]).map(String) : [];
        return open(notebook, runs);
      }
    });
    palette?.addItem({ command: OPEN_COMPARE, category: 'nbtrack' });

    // The run card (an output of `%track stop`) carries a "Compare" button; it is plain HTML,
    // so one listener on the document serves every card.
    document.addEventListener('click', event => {
      const button = (event.target as HTMLElement | null)?.closest?.<HTMLElement>(
        'button.nbtrack-open-compare'
      );
      if (!button) {
        return;
      }
      event.preventDefault();
      const run = button.dataset.nbtrackRun;
      void app.commands.execute(OPEN_COMPARE, {
        notebook: button.dataset.nbtrackNotebook || current() || '',
        runs: run ? [run] : []
      });
    });
  }
};
