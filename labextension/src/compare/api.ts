/**
 * The compare view's endpoints (CONTRACT "Compare" and "Actions"; nbtrack/server/openapi.yaml):
 * typed wrappers over the one `requestAPI` of ../api.ts, plus the CSV download.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { ApiError, IRunRow, requestAPI } from '../api';

export type ColumnGroup = 'run' | 'param' | 'metric' | 'tag' | 'data' | 'git' | 'nbtrack';
export type ColumnKind = 'number' | 'text' | 'time' | 'bool';
export type CellValue = string | number | boolean | null;

export interface ICompareColumn {
  key: string;
  label: string;
  group: ColumnGroup;
  kind: ColumnKind;
  varies: boolean;
}

export interface ICompareRow {
  run_id: string;
  name: string;
  status: string;
  values: Record<string, CellValue>;
}

export interface IComparePage {
  total: number;
  offset: number;
  limit: number;
  scope: 'notebook' | 'project';
  store: string;
  is_server: boolean;
  columns: ICompareColumn[];
  rows: ICompareRow[];
  warnings: string[];
}

/** The query of the table (everything but the page window). */
export interface ICompareQuery {
  notebook: string;
  scope: 'notebook' | 'project';
  filter: string;
  q: string;
  sort: string | null;
  order: 'asc' | 'desc';
  only: string[];
  sameData: string | null;
  columns: 'varying' | 'all';
  archived: boolean;
}

/** A metric's history: [step, value, timestamp_ms] points in step order. */
export type HistoryPoint = [number, number, number];

export interface IHistories {
  keys: string[];
  histories: Record<string, Record<string, HistoryPoint[]>>;
}

export interface IGalleryCell {
  key: string;
  label: string;
  index: number;
  outputs: number;
}

export interface IGalleryRun {
  run_id: string;
  name: string;
  outputs: Array<Record<string, unknown>>;
  missing: string | null;
}

export interface IGallery {
  cells: IGalleryCell[];
  cell: string | null;
  runs: IGalleryRun[];
}

export type Action = 'rename' | 'note' | 'tag' | 'archive' | 'restore' | 'purge';

export interface IActionResult {
  action: Action;
  done: string[];
  runs: IRunRow[];
}

type Query = Record<string, string | number | null | undefined>;

/** The query string of a compare request (shared by the table and the CSV export). */
export function compareParams(query: ICompareQuery): Query {
  return {
    notebook: query.notebook,
    scope: query.scope,
    filter: query.filter.trim(),
    q: query.q.trim(),
    sort: query.sort,
    order: query.sort ? query.order : null,
    only: query.only.join(','),
    same_data: query.sameData,
    columns: query.columns,
    archived: query.archived ? 1 : 0
  };
}

export const compareApi = {
  page(query: ICompareQuery, offset: number, limit: number): Promise<IComparePage> {
    return requestAPI<IComparePage>('compare', { ...compareParams(query), offset, limit });
  },
  histories(notebook: string, runs: string[], keys: string[] = []): Promise<IHistories> {
    return requestAPI<IHistories>('histories', {
      notebook,
      runs: runs.join(','),
      keys: keys.join(',')
    });
  },
  gallery(notebook: string, runs: string[], cell: string | null): Promise<IGallery> {
    return requestAPI<IGallery>('gallery', { notebook, runs: runs.join(','), cell });
  },
  action(notebook: string, action: Action, body: Record<string, unknown>): Promise<IActionResult> {
    return requestAPI<IActionResult>(
      `actions/${action}`,
      { notebook },
      { method: 'POST', body: JSON.stringify(body) }
    );
  }
};

/**
 * Download every matching row as CSV (`compare.csv`, same query, the shown columns in order).
 *
 * Fetched through `ServerConnection` (token and cookies as every request) and saved from a blob,
 * so it works whatever way the user authenticated.
 */
export async function downloadCsv(query: ICompareQuery, keys: string[]): Promise<void> {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries({ ...compareParams(query), keys: keys.join(',') })) {
    if (value !== undefined && value !== null && value !== '') {
      params.set(key, String(value));
    }
  }
  const url = URLExt.join(settings.baseUrl, 'nbtrack', 'compare.csv') + `?${params}`;
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    let message = `GET /nbtrack/compare.csv failed: ${response.status} ${response.statusText}`;
    try {
      message = ((await response.json()) as { message?: string }).message || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(message, response.status);
  }
  const blob = await response.blob();
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  const disposition = response.headers.get('Content-Disposition') ?? '';
  link.download = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? 'nbtrack-runs.csv';
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
