/**
 * The `nbtrack` comm between a notebook's kernel and the panel (kernel side:
 * nbtrack/magics/frontend.py).
 *
 * The kernel opens the comm at `%load_ext nbtrack` (`hello`); a frontend that arrives later finds
 * it with `comm_info` and attaches. The frontend tells the kernel the notebook's path (the kernel
 * cannot know it after a rename), sends the live editor content before tracked cells run, and
 * learns when a run starts (`state`) and ends (`run_finished`).
 *
 * The first Run All in a fresh kernel queues every cell before the comm exists (the kernel opens
 * it in the first cell). So the frontend also sends the content as soon as the comm opens, listing
 * the cells still `pending`; and it sends it over the comm's kernel subshell (JupyterLab's "comms
 * over subshells", JEP 91) once that is up, since a subshell's messages are handled while the main
 * shell runs the queued cells. A message on the main shell would wait behind the last of them.
 */
import { Cell, ICodeCellModel } from '@jupyterlab/cells';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import {
  INotebookModel,
  Notebook,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { JSONObject } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

export const TARGET = 'nbtrack';
const TRACK_MAGIC = /^\s*%{1,2}track\b/m;
/** How long the first messages wait for the comm's subshell before going on the main shell. */
const SUBSHELL_WAIT_MS = 3000;

/** What JupyterLab's comm handler (4.4+) adds to `Kernel.IComm`: its subshell, once started. */
interface ISubshellComm {
  readonly subshellStarted?: Promise<void>;
}

/** What a `run_finished` message says, plus the path of the notebook whose kernel said it. */
export interface IRunFinished {
  path: string;
  runId: string;
  status: string;
  notebook: string | null;
}

/** Where the kernel should think its notebook is. */
export type PathResolver = (path: string) => Promise<string | null>;

type NotebookContext = DocumentRegistry.IContext<INotebookModel>;

/**
 * One notebook document's link to its kernel. Keyed by the document context, not the panel: two
 * views of one notebook share one kernel connection, which holds one callback per comm target.
 */
class KernelBridge implements IDisposable {
  constructor(
    readonly context: NotebookContext,
    private _manager: BridgeManager
  ) {
    const sessionContext = context.sessionContext;
    sessionContext.kernelChanged.connect(this._onKernelChanged, this);
    sessionContext.statusChanged.connect(this._onStatusChanged, this);
    context.pathChanged.connect(this._onPathChanged, this);
    this._attach(sessionContext.session?.kernel ?? null);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** The kernel last said a run is being tracked. */
  get tracking(): boolean {
    return this._tracking;
  }

  /**
   * Send the notebook's live content before `cell` executes. Called synchronously from
   * `executionScheduled`, so the message is queued ahead of the cell's execute_request.
   */
  sendLive(cell: Cell): void {
    const comm = this._comm;
    if (!comm || comm.isDisposed) {
      return;
    }
    const source = cell.model.sharedModel.getSource();
    if (!this._tracking && !TRACK_MAGIC.test(source)) {
      return;
    }
    this._sendLive(cell.model.id);
  }

  /**
   * Send the editor's content now, as of `marker` (no cell id of the notebook: a caller that then
   * waits in the kernel for content covering `marker` knows it has this one). Without `pending`, the
   * kernel orders it by when it arrives: after the cells that ran, so a run ending next records it.
   */
  sendFinal(marker: string): void {
    const comm = this._comm;
    if (!comm || comm.isDisposed) {
      return;
    }
    this._send({
      type: 'live',
      path: this.context.path,
      cell_id: marker,
      notebook: this.context.model.toJSON() as unknown as JSONObject
    });
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._detach();
    Signal.clearData(this);
  }

  private _onKernelChanged(
    _: unknown,
    change: { oldValue: Kernel.IKernelConnection | null; newValue: Kernel.IKernelConnection | null }
  ): void {
    this._attach(change.newValue);
  }

  private _onStatusChanged(_: unknown, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      // A restarted kernel has forgotten nbtrack; it opens a new comm at `%load_ext nbtrack`.
      this._comm = null;
      this._tracking = false;
    }
  }

  private _onPathChanged(): void {
    void this._sendPath();
  }

  private _attach(kernel: Kernel.IKernelConnection | null): void {
    this._detach();
    this._kernel = kernel;
    if (!kernel || !kernel.handleComms) {
      return;
    }
    this._target = (comm, msg) => this._onCommOpen(kernel, comm, msg);
    kernel.registerCommTarget(TARGET, this._target);
    kernel.connectionStatusChanged.connect(this._onConnectionStatus, this);
    void this._findComm(kernel);
  }

  private _detach(): void {
    const kernel = this._kernel;
    if (kernel && !kernel.isDisposed) {
      kernel.connectionStatusChanged.disconnect(this._onConnectionStatus, this);
      if (this._target) {
        kernel.removeCommTarget(TARGET, this._target);
      }
    }
    this._target = null;
    this._kernel = null;
    this._comm = null;
    this._tracking = false;
  }

  private _onConnectionStatus(
    kernel: Kernel.IKernelConnection,
    status: Kernel.ConnectionStatus
  ): void {
    if (status === 'connected' && !this._comm) {
      void this._findComm(kernel);
    }
  }

  /** Attach to a comm the kernel opened before this frontend was listening. */
  private async _findComm(kernel: Kernel.IKernelConnection): Promise<void> {
    let reply: KernelMessage.ICommInfoReplyMsg;
    try {
      reply = await kernel.requestCommInfo({ target_name: TARGET });
    } catch {
      return; // kernel gone or busy restarting: the next connect tries again
    }
    if (kernel !== this._kernel || this._comm || reply.content.status !== 'ok') {
      return;
    }
    const ids = Object.entries(reply.content.comms)
      .filter(([, info]) => info.target_name === TARGET)
      .map(([id]) => id);
    const commId = ids[ids.length - 1];
    if (commId === undefined || kernel.hasComm(commId)) {
      return;
    }
    let comm: Kernel.IComm;
    try {
      comm = kernel.createComm(TARGET, commId);
    } catch {
      return;
    }
    this._use(comm);
    void this._greet(kernel, comm, true);
  }

  private _onCommOpen(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm,
    msg: KernelMessage.ICommOpenMsg
  ): void {
    if (kernel !== this._kernel) {
      return;
    }
    this._use(comm);
    this._onData(msg.content.data as JSONObject);
    void this._greet(kernel, comm, false);
  }

  /**
   * The first messages on a comm: (`hello`,) the live content and the path, once the comm's
   * subshell is up (or there is none). The content first: the path waits for the server's root.
   */
  private async _greet(
    kernel: Kernel.IKernelConnection,
    comm: Kernel.IComm,
    hello: boolean
  ): Promise<void> {
    await subshellReady(kernel, comm);
    if (this._comm !== comm || comm.isDisposed) {
      return;
    }
    if (hello) {
      this._send({ type: 'hello' });
    }
    if (this.context.model && TRACK_MAGIC.test(this._sources())) {
      this._sendLive(null);
    }
    await this._sendPath();
  }

  private _sources(): string {
    const cells = this.context.model.sharedModel.cells;
    return cells.map(cell => cell.getSource()).join('\n');
  }

  /**
   * The editor's content, and the code cells scheduled or running now (their prompt shows `*`):
   * the content is theirs as of their scheduling (Run All schedules every cell at once).
   */
  private _sendLive(cellId: string | null): void {
    const pending: string[] = [];
    const cells = this.context.model.cells;
    for (let i = 0; i < cells.length; i++) {
      const model = cells.get(i);
      if (model.type === 'code' && (model as ICodeCellModel).executionState === 'running') {
        pending.push(model.id);
      }
    }
    if (cellId !== null && !pending.includes(cellId)) {
      pending.push(cellId);
    }
    this._send({
      type: 'live',
      path: this.context.path,
      cell_id: cellId,
      pending,
      notebook: this.context.model.toJSON() as unknown as JSONObject
    });
  }

  private _use(comm: Kernel.IComm): void {
    this._comm = comm;
    comm.onMsg = msg => this._onData(msg.content.data as JSONObject);
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
        this._tracking = false;
      }
    };
  }

  private _onData(data: JSONObject): void {
    switch (data.type) {
      case 'hello':
      case 'state':
        this._tracking = data.tracking === true;
        break;
      case 'run_finished':
        this._tracking = false;
        this._manager.notifyRunFinished({
          path: this.context.path,
          runId: String(data.run_id ?? ''),
          status: String(data.status ?? ''),
          notebook: typeof data.notebook === 'string' ? data.notebook : null
        });
        break;
      default:
        break;
    }
  }

  private async _sendPath(): Promise<void> {
    if (!this._comm) {
      return;
    }
    const path = this.context.path;
    const absPath = await this._manager.resolvePath(path);
    if (path !== this.context.path) {
      return; // renamed meanwhile: that rename sends its own message
    }
    this._send({ type: 'path', path, abs_path: absPath });
  }

  private _send(data: JSONObject): void {
    const comm = this._comm;
    if (!comm || comm.isDisposed) {
      return;
    }
    try {
      comm.send(data);
    } catch (error) {
      console.warn('nbtrack: could not send on the comm', error);
    }
  }

  private _disposed = false;
  private _kernel: Kernel.IKernelConnection | null = null;
  private _comm: Kernel.IComm | null = null;
  private _tracking = false;
  private _target:
    | ((comm: Kernel.IComm, msg: KernelMessage.ICommOpenMsg) => void)
    | null = null;
}

/**
 * Resolves once `comm`'s messages go to its own kernel subshell, or at once when they never will
 * (the kernel has no subshells, or Lab's "Kernel Comms over subshells" setting is off); at most
 * SUBSHELL_WAIT_MS.
 */
async function subshellReady(kernel: Kernel.IKernelConnection, comm: Kernel.IComm): Promise<void> {
  const started = (comm as Kernel.IComm & ISubshellComm).subshellStarted;
  if (!started || comm.commsOverSubshells === 'disabled') {
    return;
  }
  try {
    await kernel.info;
  } catch {
    return;
  }
  if (!kernel.supportsSubshells) {
    return;
  }
  let timer = 0;
  const timeout = new Promise<void>(resolve => {
    timer = window.setTimeout(resolve, SUBSHELL_WAIT_MS);
  });
  await Promise.race([started.catch(() => undefined), timeout]);
  window.clearTimeout(timer);
}

/** The bridges of every open notebook. */
export class BridgeManager implements IDisposable {
  constructor(readonly resolvePath: PathResolver) {
    NotebookActions.executionScheduled.connect(this._onScheduled, this);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Emitted when a `%track stop` finished in some notebook. */
  get runFinished(): ISignal<this, IRunFinished> {
    return this._runFinished;
  }

  /** Start following a notebook panel's kernel (until its document closes). */
  add(panel: NotebookPanel): void {
    const context = panel.context;
    if (this._bridges.has(context)) {
      return;
    }
    const bridge = new KernelBridge(context, this);
    this._bridges.set(context, bridge);
    context.disposed.connect(() => {
      bridge.dispose();
      this._bridges.delete(context);
    });
  }

  /** Send a notebook's editor content to its kernel now (see `KernelBridge.sendFinal`). */
  sendFinalLive(context: NotebookContext, marker: string): void {
    this._bridges.get(context)?.sendFinal(marker);
  }

  notifyRunFinished(args: IRunFinished): void {
    this._runFinished.emit(args);
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    NotebookActions.executionScheduled.disconnect(this._onScheduled, this);
    this._bridges.forEach(bridge => bridge.dispose());
    this._bridges.clear();
    Signal.clearData(this);
  }

  private _onScheduled(_: unknown, args: { notebook: Notebook; cell: Cell }): void {
    for (const [context, bridge] of this._bridges) {
      if (context.model === args.notebook.model) {
        bridge.sendLive(args.cell);
        return;
      }
    }
  }

  private _disposed = false;
  private _bridges = new Map<NotebookContext, KernelBridge>();
  private _runFinished = new Signal<this, IRunFinished>(this);
}
