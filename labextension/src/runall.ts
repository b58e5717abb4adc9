/**
 * "Run All and Track": Run All in the notebook's live kernel, wrapped in one tracked run, with no
 * `%track` line in the notebook (issue 15). A command (palette: "Run All and Track") and a button
 * on every notebook's toolbar.
 *
 * Three silent executions around JupyterLab's own Run All (silent: they are not in the kernel's
 * history, not numbered, and IPython's pre/post_run_cell hooks, which the tracker's history reads,
 * do not see them): `%load_ext nbtrack` + `%track start`, Run All, then the end of the run:
 * FINISHED, or FAILED with the cell that raised (as a kernel that exits after a failing cell ends
 * it: `Tracker.failure()`), after the editor's final content reached the kernel (the run records
 * it as `notebook.live.ipynb`). The kernel's `run_finished` refreshes the panel, as for `%track stop`.
 * A run already active in the kernel is not nested: the user is told to end it first. A notebook
 * that tracks itself (`%track` lines) is only Run All'ed: it makes its own run.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette, Notification, ToolbarButton } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

import { BridgeManager } from './comm';
import { nbtrackIcon } from './icon';

export const RUN_ALL_TRACKED = 'nbtrack:run-all-tracked';
const TRACK_MAGIC = /^\s*%{1,2}track\b/m;

/** A silent execution's outcome: its status, its error line, its user expressions as text. */
interface ISilent {
  status: string;
  error: string | null;
  values: Record<string, string>;
}

/** Python string literal of `text` (JSON's escapes are Python's for these characters). */
function pyString(text: string): string {
  return JSON.stringify(text);
}

/**
 * Execute `code` silently; its user expressions come back as their `text/plain`. An execution
 * the kernel aborted (the tail of Run All's abort after a failing cell) is tried again.
 */
async function silent(
  kernel: Kernel.IKernelConnection,
  code: string,
  expressions: Record<string, string> = {}
): Promise<ISilent> {
  for (let attempt = 0; ; attempt++) {
    const future = kernel.requestExecute({
      code,
      silent: true,
      store_history: false,
      stop_on_error: false,
      user_expressions: expressions
    });
    const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
    const content = reply.content as unknown as {
      status: string;
      ename?: string;
      evalue?: string;
      user_expressions?: Record<string, { status: string; data?: Record<string, string> }>;
    };
    if (content.status === 'aborted' && attempt < 5) {
      await new Promise(resolve => setTimeout(resolve, 200));
      continue;
    }
    const values: Record<string, string> = {};
    for (const [name, value] of Object.entries(content.user_expressions ?? {})) {
      if (value.status === 'ok' && value.data) {
        values[name] = value.data['text/plain'] ?? '';
      }
    }
    const error =
      content.status === 'error' ? `${content.ename ?? 'Error'}: ${content.evalue ?? ''}` : null;
    return { status: content.status, error, values };
  }
}

/**
 * The kernel side of nbtrack's runners (nbtrack/magics/engine_run.py: `begin`, `end`), the same
 * public calls papermill's nbtrack engine makes; each returns JSON, read as a user expression.
 */
const RUNNER = "__import__('nbtrack.magics.engine_run', fromlist=['begin'])";

function beginCall(notebook: string | null): string {
  const options = JSON.stringify({ notebook, started_by: 'JupyterLab Run All' });
  return `${RUNNER}.begin(${pyString(options)})`;
}

/** End the run: FAILED when the last cell raised (the kernel knows), once the editor's content arrived. */
function endCall(marker: string): string {
  return `${RUNNER}.end(None, ${pyString(marker)})`;
}

/**
 * A user expression's JSON: its `text/plain` is the repr of the Python str `json.dumps` made
 * (single-quoted; a backslash escapes the next character).
 */
function parsed(text: string | undefined): Record<string, unknown> {
  const repr = text ?? '';
  const body = repr.slice(1, -1).replace(/\\(.)/g, (_match, c: string) => (c === 'n' ? '\n' : c));
  try {
    return JSON.parse(body) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/**
 * Run All in `panel`'s kernel as one tracked run.
 *
 * @param resolvePath - the notebook's absolute path (from the server's root), for `--notebook`
 */
export async function runAllTracked(
  panel: NotebookPanel,
  bridges: BridgeManager,
  resolvePath: (path: string) => Promise<string | null>
): Promise<void> {
  const context = panel.context;
  const sessionContext = panel.sessionContext;
  const sources = context.model.sharedModel.cells.map(cell => cell.getSource()).join('\n');
  if (TRACK_MAGIC.test(sources)) {
    Notification.info('This notebook has its own %track lines: it tracks itself. Running all.', {
      autoClose: 5000
    });
    await NotebookActions.runAll(panel.content, sessionContext);
    return;
  }
  await sessionContext.ready;
  const kernel = sessionContext.session?.kernel;
  if (!kernel) {
    Notification.warning('Run All and Track needs a kernel: select one for this notebook first.');
    return;
  }
  const absPath = await resolvePath(context.path);
  const began = await silent(kernel, '%load_ext nbtrack', { begin: beginCall(absPath) });
  const start = parsed(began.values.begin);
  if (began.error !== null || !('run_id' in start)) {
    const why = began.error ?? 'no answer from nbtrack in this kernel';
    Notification.error(`nbtrack could not start a run in this kernel (${why}); pip install nbtrack there.`);
    return;
  }
  if (start.started === false) {
    const active = String(start.run_id ?? '');
    Notification.warning(
      `Run ${active.slice(0, 8)} is already tracked in this kernel; end it with %track stop, then Run All and Track.`,
      { autoClose: 8000 }
    );
    return;
  }
  try {
    await NotebookActions.runAll(panel.content, sessionContext);
  } finally {
    // The editor's content now (with the outputs Run All made) is the run's live notebook.
    const marker = `nbtrack-run-all-${Date.now()}`;
    bridges.sendFinalLive(context, marker);
    const stopped = await silent(kernel, '', { end: endCall(marker) });
    const last = parsed(stopped.values.end);
    if (stopped.error !== null || !('status' in last)) {
      Notification.error(`The run could not end: ${stopped.error ?? 'no answer from nbtrack'}`);
    } else if (last.status) {
      const message = `Run ${String(last.run_id ?? '').slice(0, 8)} ${String(last.status)}`;
      (last.status === 'FINISHED' ? Notification.success : Notification.warning)(message, {
        autoClose: 5000
      });
    }
  }
}

/** The command, its palette entry, and the button on every notebook's toolbar. */
export function addRunAllTracked(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  bridges: BridgeManager,
  resolvePath: (path: string) => Promise<string | null>,
  palette: ICommandPalette | null
): void {
  const running = new WeakSet<NotebookPanel>();
  const run = async (panel: NotebookPanel | null): Promise<void> => {
    if (!panel || running.has(panel)) {
      return;
    }
    running.add(panel);
    try {
      await runAllTracked(panel, bridges, resolvePath);
    } catch (error) {
      Notification.error(`Run All and Track failed: ${String(error)}`);
    } finally {
      running.delete(panel);
    }
  };
  app.commands.addCommand(RUN_ALL_TRACKED, {
    label: 'Run All and Track',
    caption: 'Run all cells in the kernel as one tracked nbtrack run (no %track line needed)',
    icon: args => (args.toolbar ? nbtrackIcon : undefined),
    isEnabled: () => tracker.currentWidget !== null,
    execute: () => run(tracker.currentWidget)
  });
  palette?.addItem({ command: RUN_ALL_TRACKED, category: 'nbtrack' });
  const addButton = (panel: NotebookPanel): void => {
    const button = new ToolbarButton({
      className: 'nbtrack-run-all-tracked',
      icon: nbtrackIcon,
      label: 'Run All and Track',
      tooltip: 'Run all cells as one tracked nbtrack run',
      onClick: () => void run(panel)
    });
    if (!panel.toolbar.insertAfter('cellType', 'nbtrack-run-all-tracked', button)) {
      panel.toolbar.addItem('nbtrack-run-all-tracked', button);
    }
  };
  tracker.widgetAdded.connect((_, panel) => addButton(panel));
  tracker.forEach(addButton);
}
