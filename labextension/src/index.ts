/**
 * nbtrack's JupyterLab plugin: the runs panel on the right, the read-only drive of recorded
 * notebooks, and the comm bridge to every notebook's kernel.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { find } from '@lumino/algorithm';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { api } from './api';
import { BridgeManager } from './comm';
import { comparePlugin, OPEN_COMPARE } from './compare/plugin';
import { confirmUncommitted } from './consent';
import { DRIVE_NAME, keepClean, recordedNotebookFactory, RunsDrive } from './drive';
import { nbtrackIcon } from './icon';
import { RunsModel } from './model';
import { NotebookDiffView } from './nbdiff';
import { NbtrackPanel, PANEL_ID } from './panel';
import { addRunAllTracked } from './runall';

const PLUGIN_ID = 'nbtrack:panel';

namespace CommandIDs {
  export const show = 'nbtrack:show-runs';
  export const refresh = 'nbtrack:refresh-runs';
  export const openRecorded = 'nbtrack:open-recorded-notebook';
  export const notebookDiff = 'nbtrack:notebook-diff';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Tracked runs of the open notebook: list, diff, replay (nbtrack).',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  optional: [ILayoutRestorer, ICommandPalette, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    docManager: IDocumentManager,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null
  ): void => {
    const contents = app.serviceManager.contents;
    const drive = new RunsDrive();
    contents.addDrive(drive);

    const model = new RunsModel();
    model.confirmUncommitted = confirmUncommitted;
    /** Notebooks of the server's own drive (not our recorded ones, nor other drives). */
    const serverPath = (panel: NotebookPanel | null): string | null => {
      if (!panel || panel.isDisposed) {
        return null;
      }
      const path = panel.context.path;
      return contents.driveName(path) === '' ? path : null;
    };

    const openRecorded = async (runId: string): Promise<void> => {
      try {
        const local = await drive.prepare(runId, model.notebook);
        const factory = recordedNotebookFactory(app.docRegistry) ?? 'Notebook';
        const widget = docManager.openOrReveal(`${DRIVE_NAME}:${local}`, factory);
        if (widget) {
          // A recording is for reading: do not start a kernel for it (one can still be chosen).
          const sessionContext = widget.context.sessionContext;
          sessionContext.kernelPreference = {
            ...sessionContext.kernelPreference,
            shouldStart: false,
            autoStartDefault: false
          };
          keepClean(widget.context);
        }
      } catch (error) {
        await showErrorMessage('Cannot open the recorded notebook', String(error));
      }
    };

    // Two runs' notebooks with outputs (nbdime) in the main area; one tab per pair of runs.
    const openNotebookDiff = (a: string, b: string): void => {
      if (!rendermime) {
        void showErrorMessage('Cannot show the notebook diff', 'JupyterLab has no rendermime registry');
        return;
      }
      const id = `nbtrack-nbdiff-${a.slice(0, 8)}-${b.slice(0, 8)}`;
      const open = find(app.shell.widgets('main'), w => w.id === id);
      if (open) {
        app.shell.activateById(id);
        return;
      }
      app.shell.add(new NotebookDiffView(a, b, model.notebook, rendermime), 'main');
      app.shell.activateById(id);
    };

    const panel = new NbtrackPanel({
      model,
      openNotebook: openRecorded,
      openCompare: notebook => void app.commands.execute(OPEN_COMPARE, { notebook: notebook ?? '' }),
      openNotebookDiff,
      rendermime
    });
    panel.title.icon = nbtrackIcon;
    app.shell.add(panel, 'right', { rank: 600 });
    restorer?.add(panel, PANEL_ID);

    // Follow the active notebook, and its renames. A recorded notebook (our drive) or another
    // drive's becoming current keeps the panel on the last server notebook, whose run it shows.
    let followed: NotebookPanel | null = null;
    const onPathChanged = () => model.setNotebook(serverPath(followed));
    const follow = (nb: NotebookPanel | null) => {
      if (nb !== null && serverPath(nb) === null) {
        if (followed === null || !followed.isDisposed) {
          return;
        }
        nb = null;
      }
      if (followed === nb) {
        return;
      }
      followed?.context.pathChanged.disconnect(onPathChanged);
      followed = nb;
      followed?.context.pathChanged.connect(onPathChanged);
      model.setNotebook(serverPath(nb));
    };
    tracker.widgetAdded.connect((_, nb) => {
      nb.disposed.connect(() => {
        if (followed === nb) {
          follow(tracker.currentWidget === nb ? null : tracker.currentWidget);
        }
      });
    });
    tracker.currentChanged.connect((_, nb) => follow(nb));
    follow(tracker.currentWidget);

    // The kernel side: where each notebook is, live content, and the end of runs.
    let rootDir: Promise<string | null> | null = null;
    const resolvePath = async (path: string): Promise<string | null> => {
      rootDir ??= api.info().then(
        info => info.root_dir,
        () => {
          rootDir = null; // retry next time (server extension may come up later)
          return null;
        }
      );
      const root = await rootDir;
      return root ? `${root.replace(/[\\/]+$/, '')}/${path}` : null;
    };
    const bridges = new BridgeManager(resolvePath);
    const watch = (nb: NotebookPanel) => {
      if (serverPath(nb) !== null) {
        bridges.add(nb);
      }
    };
    tracker.widgetAdded.connect((_, nb) => watch(nb));
    tracker.forEach(watch);
    bridges.runFinished.connect((_, finished) => {
      if (finished.path === model.notebook) {
        void model.refresh(true);
      }
    });

    app.commands.addCommand(CommandIDs.show, {
      label: 'Show nbtrack Runs',
      caption: 'The tracked runs of the active notebook',
      execute: () => app.shell.activateById(PANEL_ID)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh nbtrack Runs',
      execute: () => model.refresh()
    });
    app.commands.addCommand(CommandIDs.openRecorded, {
      label: 'Open Recorded Notebook of an nbtrack Run',
      execute: args => openRecorded(String(args.runId ?? ''))
    });
    app.commands.addCommand(CommandIDs.notebookDiff, {
      label: 'Diff the Notebooks of Two nbtrack Runs',
      execute: args => openNotebookDiff(String(args.a ?? ''), String(args.b ?? ''))
    });
    addRunAllTracked(app, tracker, bridges, resolvePath, palette);
    palette?.addItem({ command: CommandIDs.show, category: 'nbtrack' });
    palette?.addItem({ command: CommandIDs.refresh, category: 'nbtrack' });
  }
};

export default [plugin, comparePlugin];
