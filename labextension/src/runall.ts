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

/** The kernel's tracker (see nbtrack/magics: `load` keeps it on the shell). */
const TRACKER = "getattr(get_ipython(), '_nbtrack_tracker', None)";
const ACTIVE = `(lambda t: t.active.run_id if t is not None and t.active is not None else '')(${TRACKER})`;
const LAST = `__import__('json').dumps((lambda t: {k: (t.last or {}).get(k) for k in ('run_id', 'status')} if t is not None else {})(${TRACKER}))`;

/** End the active run (if the notebook did not already): FAILED with the failing cell, else FINISHED. */
function stopCode(marker: string): string {
  return [
    'def _nbtrack_run_all_stop(marker):',
    '    import nbtrack.magics as magics',
    '    ip = get_ipython()',
    "    tracker, frontend = getattr(ip, '_nbtrack_tracker', None), getattr(ip, '_nbtrack_frontend', None)",
    '    if tracker is None or tracker.active is None:',
    '        return',
    '    if frontend is not None:',
    '        frontend.wait_live(marker)',
    '    failure = tracker.failure()',
    "    status = 'FAILED' if failure is not None else 'FINISHED'",
    '    magics.stop_and_tell(tracker, frontend, status, failure=failure)',
    'try:',
    `    _nbtrack_run_all_stop(${pyString(marker)})`,
    'finally:',
    '    del _nbtrack_run_all_stop'
  ].join('\n');
}

function unquote(text: string | undefined): string {
  // A Python str's repr: 'abc' or "abc".
  return (text ?? '').replace(/^['"]|['"]$/g, '');
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
  const loaded = await silent(kernel, '%load_ext nbtrack', { active: ACTIVE });
  if (loaded.error !== null) {
    Notification.error(`nbtrack could not be loaded in this kernel (${loaded.error}); pip install nbtrack there.`);
    return;
  }
  const active = unquote(loaded.values.active);
  if (active) {
    Notification.warning(
      `Run ${active.slice(0, 8)} is already tracked in this kernel; end it with %track stop, then Run All and Track.`,
      { autoClose: 8000 }
    );
    return;
  }
  const absPath = await resolvePath(context.path);
  const where = absPath ? ` --notebook ${pyString(absPath)}` : '';
  const started = await silent(
    kernel,
    `get_ipython().run_line_magic("track", ${pyString(`start${where}`)})`,
    { active: ACTIVE }
  );
  if (started.error !== null || !unquote(started.values.active)) {
    Notification.error(`The run could not start: ${started.error ?? 'no run is active'}`);
    return;
  }
  try {
    await NotebookActions.runAll(panel.content, sessionContext);
  } finally {
    // The editor's content now (with the outputs Run All made) is the run's live notebook.
    const marker = `nbtrack-run-all-${Date.now()}`;
    bridges.sendFinalLive(context, marker);
    const stopped = await silent(kernel, stopCode(marker), { last: LAST });
    if (stopped.error !== null) {
      Notification.error(`The run could not end: ${stopped.error}`);
    } else {
      let last: { run_id?: string; status?: string } = {};
      try {
        last = JSON.parse(unquote(stopped.values.last)) as typeof last;
      } catch {
        last = {};
      }
      if (last.status) {
        const message = `Run ${(last.run_id ?? '').slice(0, 8)} ${last.status}`;
        (last.status === 'FINISHED' ? Notification.success : Notification.warning)(message, {
          autoClose: 5000
        });
      }
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
