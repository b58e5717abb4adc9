/**
 * The panel's state: the followed notebook, its runs, the selection, the selected run's details or
 * the two selected runs' diff, and replay jobs. Widgets render it; it emits `changed`.
 */
import { ISignal, Signal } from '@lumino/signaling';

import {
  api,
  ApiError,
  IDiff,
  IJob,
  IProvenance,
  IRunDetail,
  IRunRow,
  RunAction
} from './api';

/** Something fetched from the server. */
export interface IRemote<T> {
  loading: boolean;
  data: T | null;
  error: string | null;
}

/** A replay started from the panel. */
export interface IReplayState {
  job: IJob | null;
  error: string | null;
}

const POLL_MS = 1000;

function messageOf(error: unknown): string {
  if (error instanceof ApiError || error instanceof Error) {
    return error.message;
  }
  return String(error);
}

export class RunsModel {
  /** Emitted after any change of state. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The followed notebook's path (relative to the server root), or null. */
  get notebook(): string | null {
    return this._notebook;
  }

  get runs(): readonly IRunRow[] {
    return this._runs;
  }

  get listLoading(): boolean {
    return this._listLoading;
  }

  get listError(): string | null {
    return this._listError;
  }

  /** True once the list of the current notebook has been fetched at least once. */
  get listLoaded(): boolean {
    return this._listLoaded;
  }

  /** The server's one-line warning about this list (the tracking server is unreachable). */
  get listWarning(): string | null {
    return this._listWarning;
  }

  /** MLflow's UI (server store) or the `mlflow ui` command (embedded store), from the list. */
  get browse(): { url: string | null; command: string | null } {
    return this._browse;
  }

  /** What the panel shows in place of the list: a run's details, two runs' diff, or the list. */
  get view(): 'list' | 'details' | 'diff' {
    return this._details ? 'details' : this._diff ? 'diff' : 'list';
  }

  /** The last action's error (rename, note, archive), shown in the details. */
  get actionError(): string | null {
    return this._actionError;
  }

  get hasMore(): boolean {
    return this._nextPageToken !== null;
  }

  /** The selected run ids, oldest selection first (at most two). */
  get selection(): readonly string[] {
    return this._selection;
  }

  get details(): IRemote<IRunDetail> | null {
    return this._details;
  }

  get diff(): IRemote<IDiff> | null {
    return this._diff;
  }

  replayOf(runId: string): IReplayState | null {
    return this._replays.get(runId) ?? null;
  }

  /**
   * Whether the panel is on screen. A hidden panel fetches nothing (a notebook switch would
   * otherwise cost a store query each time); showing it fetches.
   */
  get visible(): boolean {
    return this._visible;
  }

  set visible(value: boolean) {
    this._visible = value;
  }

  /** Follow another notebook (null: none); clears the list and the selection. */
  setNotebook(path: string | null): void {
    if (path === this._notebook) {
      return;
    }
    this._notebook = path;
    this._runs = [];
    this._nextPageToken = null;
    this._listLoaded = false;
    this._listError = null;
    this._listWarning = null;
    this._clearSelection();
    this._generation++;
    this._listLoading = false;
    this._emit();
    void this.refresh();
  }

  /**
   * Fetch the first page again. The selection is kept when its runs are still listed, unless
   * `clearSelection`.
   */
  async refresh(clearSelection = false): Promise<void> {
    const notebook = this._notebook;
    if (notebook === null || !this._visible) {
      return;
    }
    const generation = ++this._generation;
    if (clearSelection) {
      this._clearSelection();
    }
    this._listLoading = true;
    this._emit();
    try {
      const page = await api.runs(notebook);
      if (generation !== this._generation) {
        return;
      }
      this._runs = page.runs;
      this._nextPageToken = page.next_page_token ?? null;
      this._listError = null;
      this._listWarning = page.warning ?? null;
      this._browse = { url: page.mlflow_ui ?? null, command: page.mlflow_ui_command ?? null };
      const listed = new Set(this._runs.map(r => r.run_id));
      if (this._selection.some(id => !listed.has(id))) {
        this._clearSelection();
      }
    } catch (error) {
      if (generation !== this._generation) {
        return;
      }
      this._listError = messageOf(error);
    }
    this._listLoading = false;
    this._listLoaded = true;
    this._emit();
  }

  /** Append the next page of runs. */
  async loadMore(): Promise<void> {
    const notebook = this._notebook;
    const token = this._nextPageToken;
    if (notebook === null || token === null || this._listLoading) {
      return;
    }
    const generation = this._generation;
    this._listLoading = true;
    this._emit();
    try {
      const page = await api.runs(notebook, token);
      if (generation !== this._generation) {
        return;
      }
      const known = new Set(this._runs.map(r => r.run_id));
      this._runs = [...this._runs, ...page.runs.filter(r => !known.has(r.run_id))];
      this._nextPageToken = page.next_page_token ?? null;
      this._listError = null;
    } catch (error) {
      if (generation !== this._generation) {
        return;
      }
      this._listError = messageOf(error);
    }
    this._listLoading = false;
    this._emit();
  }

  /** Select one run alone and open its details in place of the list (a click, Enter). */
  select(runId: string): void {
    this._setSelection([runId], true);
  }

  /**
   * Add a run to the selection or take it out (checkbox, ctrl/shift-click, Space); keeps two at
   * most. Two selected runs open their diff in place of the list.
   */
  toggle(runId: string): void {
    const current = this._selection.filter(id => id !== runId);
    if (current.length === this._selection.length) {
      current.push(runId);
    }
    this._setSelection(current.slice(-2), false);
  }

  /** Close the details or the diff: the list again (the selection is kept). */
  back(): void {
    if (this._details === null && this._diff === null) {
      return;
    }
    this._details = null;
    this._diff = null;
    this._actionError = null;
    this._emit();
  }

  /**
   * Run a single-run action (rename, note, archive) and show its result: the list row is
   * replaced by the server's row after the change; an archived run leaves the list.
   */
  async act(runId: string, action: RunAction, body: Record<string, unknown> = {}): Promise<boolean> {
    this._actionError = null;
    this._emit();
    try {
      const result = await api.action(action, { runs: [runId], ...body }, this._notebook);
      const after = new Map(result.runs.map(r => [r.run_id, r]));
      if (action === 'archive' || action === 'purge') {
        this._runs = this._runs.filter(r => !result.done.includes(r.run_id));
        this._clearSelection();
      } else {
        this._runs = this._runs.map(r => after.get(r.run_id) ?? r);
        const details = this._details;
        const row = after.get(runId);
        if (details?.data && row && details.data.run_id === runId) {
          const note = action === 'note' ? String(body.note ?? '') : details.data.note;
          details.data = { ...details.data, ...row, note };
        }
      }
      this._emit();
      return true;
    } catch (error) {
      this._actionError = messageOf(error);
      this._emit();
      return false;
    }
  }

  /**
   * Asks the user whether to replay a run whose code the repository does not hold (the server
   * refused it: a run from a tracking server); the panel shows what differs. Default: no.
   */
  confirmUncommitted: (runId: string, provenance: IProvenance) => Promise<boolean> = async () =>
    false;

  /**
   * Replay a run: start the job, then poll it until it ends. When the server refuses to run
   * uncommitted code, ask (`confirmUncommitted`) and, on consent, replay again allowing it.
   */
  async replay(runId: string, allowUncommitted = false): Promise<void> {
    const running = this._replays.get(runId)?.job;
    if (running && (running.state === 'queued' || running.state === 'running')) {
      return;
    }
    this._replays.set(runId, { job: null, error: null });
    this._emit();
    let job: IJob;
    try {
      job = await api.replay(runId, this._notebook, allowUncommitted);
    } catch (error) {
      this._replays.set(runId, { job: null, error: messageOf(error) });
      this._emit();
      return;
    }
    this._replays.set(runId, { job, error: null });
    this._emit();
    while (!this._disposed && (job.state === 'queued' || job.state === 'running')) {
      await new Promise(resolve => setTimeout(resolve, POLL_MS));
      try {
        job = await api.job(job.job_id);
      } catch (error) {
        this._replays.set(runId, { job, error: messageOf(error) });
        this._emit();
        return;
      }
      this._replays.set(runId, { job, error: null });
      this._emit();
    }
    const provenance = job.result?.provenance;
    if (!allowUncommitted && !this._disposed && job.state === 'done' && provenance?.refused) {
      if (await this.confirmUncommitted(runId, provenance)) {
        return this.replay(runId, true);
      }
    }
    // The replay is itself a run (tagged replay_of): show it when it belongs to this notebook.
    void this.refresh();
  }

  dispose(): void {
    this._disposed = true;
    Signal.clearData(this);
  }

  private _clearSelection(): void {
    this._selection = [];
    this._details = null;
    this._diff = null;
    this._actionError = null;
  }

  private _setSelection(ids: string[], open: boolean): void {
    this._selection = ids;
    this._details = null;
    this._diff = null;
    this._actionError = null;
    const notebook = this._notebook;
    if (ids.length === 1 && open) {
      const remote: IRemote<IRunDetail> = { loading: true, data: null, error: null };
      this._details = remote;
      api.run(ids[0], notebook).then(
        data => this._settle(remote, data, null),
        error => this._settle(remote, null, messageOf(error))
      );
    } else if (ids.length === 2) {
      const remote: IRemote<IDiff> = { loading: true, data: null, error: null };
      this._diff = remote;
      // Older run on the left, so the diff reads as "what changed since".
      const start = (id: string) =>
        this._runs.find(r => r.run_id === id)?.start_time ?? 0;
      const [a, b] = [...ids].sort((x, y) => start(x) - start(y));
      api.diff(a, b, notebook).then(
        data => this._settle(remote, data, null),
        error => this._settle(remote, null, messageOf(error))
      );
    }
    this._emit();
  }

  /** Store a response, unless the selection it was asked for has changed since. */
  private _settle<T>(remote: IRemote<T>, data: T | null, error: string | null): void {
    if (remote !== this._details && remote !== this._diff) {
      return;
    }
    remote.loading = false;
    remote.data = data;
    remote.error = error;
    this._emit();
  }

  private _emit(): void {
    if (!this._disposed) {
      this._changed.emit();
    }
  }

  private _changed = new Signal<this, void>(this);
  private _notebook: string | null = null;
  private _runs: IRunRow[] = [];
  private _nextPageToken: string | null = null;
  private _listLoading = false;
  private _listLoaded = false;
  private _listError: string | null = null;
  private _listWarning: string | null = null;
  private _browse: { url: string | null; command: string | null } = { url: null, command: null };
  private _actionError: string | null = null;
  private _selection: string[] = [];
  private _details: IRemote<IRunDetail> | null = null;
  private _diff: IRemote<IDiff> | null = null;
  private _replays = new Map<string, IReplayState>();
  private _generation = 0;
  private _disposed = false;
  private _visible = false;
}
