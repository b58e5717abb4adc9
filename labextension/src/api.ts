/**
 * The one module that talks to the nbtrack server extension (see nbtrack/server/openapi.yaml).
 *
 * Every request goes through `ServerConnection.makeRequest`, which adds the server token and the
 * XSRF header; every failure becomes an `ApiError` whose message tells the user what to do.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One run in a list (the same fields as `nbtrack runs --json`). */
export interface IRunRow {
  run_id: string;
  name: string | null;
  status: string;
  start: string;
  start_time: number;
  duration: string;
  duration_s: number | null;
  experiment_id: string;
  notebook: string | null;
  commit: string | null;
  git_dirty: boolean;
  data_status: string | null;
  out_of_order: boolean;
  replay_of: string | null;
  replay_verdict: string | null;
  metrics: Record<string, number>;
  params: Record<string, string>;
  /** In the tracking server's local spool, not uploaded yet. */
  pending_upload?: boolean;
  upload_error?: string | null;
  /** What a pending upload means and what to run (`nbtrack sync` on the host that holds it). */
  upload_note?: string | null;
  /** A RUNNING run whose kernel is on another host. */
  running_on?: string;
  /** The run's Markdown note (MLflow's `mlflow.note.content`), when the server sends it. */
  note?: string | null;
}

export interface IRunPage {
  runs: IRunRow[];
  next_page_token: string | null;
  /** Set when the tracking server is unreachable: only spooled runs are listed. */
  warning?: string;
  store?: string;
  notebook?: string | null;
  /** MLflow's UI for a server store (null for the embedded store). */
  mlflow_ui?: string | null;
  /** For the embedded store: the `mlflow ui` command that serves it. */
  mlflow_ui_command?: string | null;
}

export interface IRunDetail extends IRunRow {
  mlflow_url?: string | null;
  environment?: Record<string, unknown>;
  data?: Array<Record<string, unknown>>;
  git?: Record<string, unknown>;
  notebook_info?: Record<string, unknown>;
  sections?: Record<string, unknown>;
  artifacts?: string[];
}

export interface IDiffSide {
  run_id: string;
  name: string | null;
  status: string;
}

export interface IValueChange {
  name: string;
  a: unknown;
  b: unknown;
  difference?: number;
}

export interface IEnvironmentDiff {
  available: boolean;
  reason?: string;
  python?: { a: string; b: string } | null;
  added?: Array<{ name: string; version: string | null }>;
  removed?: Array<{ name: string; version: string | null }>;
  changed?: Array<{ name: string; a: string | null; b: string | null }>;
}

export interface IDataChange {
  path: string;
  a: { hash: string | null; status: string | null } | null;
  b: { hash: string | null; status: string | null } | null;
}

export interface ICellChange {
  op: 'changed' | 'added' | 'removed';
  a_cell?: number;
  b_cell?: number;
  diff?: string;
  source?: string;
}

export interface IDiff {
  a: IDiffSide;
  b: IDiffSide;
  params: IValueChange[];
  metrics: IValueChange[];
  environment: IEnvironmentDiff;
  data: IDataChange[];
  git: Record<string, { a: unknown; b: unknown }> | null;
  cells: ICellChange[];
}

/** A metric compared by a replay (nbtrack/verdict.py `compare_metrics`). */
export interface IMetricCheck {
  name: string;
  original: number | null;
  replayed: number | null;
  difference: number | null;
  tolerance: number;
  ok: boolean;
}

/**
 * Whether a replay checked the run's code against the repository (nbtrack/replay/provenance.py):
 * `refused` when it would run code the repository does not hold at the run's commit.
 */
export interface IProvenance {
  checked: boolean;
  reason: string;
  commit: string | null;
  /** One line per difference (notebook cells, files of git.diff). */
  differs: string[];
  /** The code cells' unified diff, then git.diff, for the user to read before consenting. */
  diff: string;
  refused: boolean;
  allowed: boolean;
}

/** `nbtrack replay --json`: the parts the panel shows. */
export interface IReplayResult {
  verdict: string;
  message?: string;
  metrics?: IMetricCheck[];
  params?: Array<{ name: string; original: unknown; replayed: unknown; ok: boolean }>;
  failure?: {
    cell: number | null;
    execution_count: number | null;
    source_head: string | null;
    ename?: string;
    evalue?: string;
  } | null;
  risks?: string[];
  replay_run_id?: string | null;
  /** How many results of each kind were compared (metrics, params, outputs, cell_outputs, figures). */
  evidence?: Record<string, number>;
  /** One row per compared code cell (nbtrack/replay/outputs `OutputComparison.cells`). */
  cell_outputs?: Array<{ cell: number; source_head: string; ok: boolean; detail: string }>;
  provenance?: IProvenance;
}

export type Verdict = 'REPRODUCED' | 'DIVERGED' | 'FAILED' | 'CANNOT_REPLAY' | 'UNVERIFIED';

export interface IJob {
  job_id: string;
  run_id: string;
  state: 'queued' | 'running' | 'done' | 'failed';
  progress?: { done: number; total: number } | null;
  verdict: Verdict | null;
  result: IReplayResult | null;
  report?: string | null;
  error?: string | null;
  created?: number;
  finished?: number | null;
}

export interface IRecordedNotebook {
  name: string;
  kind: string;
  trusted: boolean;
  content: Record<string, unknown>;
}

export interface IInfo {
  version: string;
  store: string;
  root_dir: string;
  mlflow_ui?: string | null;
  mlflow_ui_command?: string | null;
}

/** One run action of `POST actions/<action>` (nbtrack/server/action_handlers.py). */
export type RunAction = 'rename' | 'note' | 'tag' | 'archive' | 'restore' | 'purge';

export interface IActionResult {
  action: RunAction;
  done: string[];
  runs: IRunRow[];
}

/** Which recording of a run a notebook diff side shows. */
export type NotebookKind = 'saved' | 'live' | 'history';

export interface INbDiffSide {
  run_id: string;
  name: string | null;
  kind: NotebookKind;
  label: string;
}

/** `GET nbdiff`: nbdime's diff of two runs' recorded notebooks. */
export interface INbDiff {
  base: Record<string, unknown>;
  diff: unknown[];
  a: INbDiffSide;
  b: INbDiffSide;
  available: { a: NotebookKind[]; b: NotebookKind[] };
}

const NOT_ENABLED =
  'The nbtrack server extension is not enabled: pip install nbtrack and restart JupyterLab.';

/** A failed request, with a message meant for the user. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly family = '',
    /** The error body's other fields, e.g. `parameter`: the clone form's field at fault. */
    readonly detail: Record<string, unknown> = {}
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * Call an nbtrack endpoint and return its JSON body.
 *
 * @param endpoint - path below `/nbtrack/`, e.g. `runs`
 * @param query - query parameters; undefined/null values are left out
 * @param init - fetch options (method, body)
 */
export async function requestAPI<T>(
  endpoint: string,
  query: Record<string, string | number | null | undefined> = {},
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') {
      params.set(key, String(value));
    }
  }
  const search = params.toString();
  const url =
    URLExt.join(settings.baseUrl, 'nbtrack', endpoint) +
    (search ? `?${search}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(
      `Cannot reach the Jupyter server (${String(error)}); is it still running?`,
      0
    );
  }
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    const error = (body ?? {}) as { error?: string; message?: string };
    if (response.status === 404 && !error.error) {
      // Not one of our JSON errors: the route itself is missing.
      throw new ApiError(NOT_ENABLED, 404, 'NotEnabled');
    }
    const message =
      error.message ||
      `${init.method ?? 'GET'} /nbtrack/${endpoint} failed: ${response.status} ${response.statusText}`;
    throw new ApiError(message, response.status, error.error ?? '', error as Record<string, unknown>);
  }
  if (body === null) {
    throw new ApiError(
      `/nbtrack/${endpoint} answered with something that is not JSON; is the nbtrack server extension up to date?`,
      response.status
    );
  }
  return body as T;
}

/** One field of the clone form: a parameter of the notebook's `parameters` cell. */
export interface IParameterField {
  name: string;
  type?: string;
  /** The input: a number (int, float), a checkbox (bool), text (str), or a Python literal (any). */
  input: 'int' | 'float' | 'bool' | 'str' | 'any';
  default: unknown;
  /** The value to prefill: the run's recorded one, else the default. */
  value: unknown;
  help?: string;
}

/** `GET parameters`: the clone form, or why there is none. */
export interface IParameterForm {
  notebook: string | null;
  run_id: string | null;
  parameters: IParameterField[];
  why: string | null;
}

/** A clone job's result: the new run. */
export interface ICloneResult {
  run_id: string | null;
  status: string;
  error: string | null;
  source: string;
}

/** The endpoints, typed. */
export const api = {
  info(): Promise<IInfo> {
    return requestAPI<IInfo>('info');
  },
  runs(notebook: string, pageToken?: string | null): Promise<IRunPage> {
    return requestAPI<IRunPage>('runs', { notebook, page_token: pageToken });
  },
  run(runId: string, notebook?: string | null): Promise<IRunDetail> {
    return requestAPI<IRunDetail>(`runs/${runId}`, { notebook });
  },
  diff(a: string, b: string, notebook?: string | null): Promise<IDiff> {
    return requestAPI<IDiff>('diff', { a, b, notebook });
  },
  replay(runId: string, notebook?: string | null, allowUncommitted = false): Promise<IJob> {
    const body = { mode: 'auto', allow_uncommitted: allowUncommitted };
    return requestAPI<IJob>(
      `runs/${runId}/replay`,
      { notebook },
      { method: 'POST', body: JSON.stringify(body) }
    );
  },
  parameters(notebook: string | null, runId?: string | null): Promise<IParameterForm> {
    return requestAPI<IParameterForm>('parameters', { notebook, run: runId });
  },
  clone(runId: string, parameters: Record<string, unknown>, notebook?: string | null): Promise<IJob> {
    return requestAPI<IJob>(
      `runs/${runId}/clone`,
      { notebook },
      { method: 'POST', body: JSON.stringify({ parameters }) }
    );
  },
  job(jobId: string): Promise<IJob> {
    return requestAPI<IJob>(`jobs/${jobId}`);
  },
  notebook(runId: string, notebook?: string | null): Promise<IRecordedNotebook> {
    return requestAPI<IRecordedNotebook>(`runs/${runId}/notebook`, { notebook });
  },
  action(
    action: RunAction,
    body: Record<string, unknown>,
    notebook?: string | null
  ): Promise<IActionResult> {
    return requestAPI<IActionResult>(
      `actions/${action}`,
      { notebook },
      { method: 'POST', body: JSON.stringify(body) }
    );
  },
  nbdiff(
    a: string,
    b: string,
    sideA: NotebookKind | null,
    sideB: NotebookKind | null,
    notebook?: string | null
  ): Promise<INbDiff> {
    return requestAPI<INbDiff>('nbdiff', { notebook, a, b, side_a: sideA, side_b: sideB });
  }
};
