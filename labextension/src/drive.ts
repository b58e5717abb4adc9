/**
 * A read-only contents drive that serves each run's recorded notebook, so the panel can open it as
 * a document without writing a file into the user's folder.
 *
 * Paths: `nbtrack-runs:<run_id>/<name>.ipynb` (the name is only for the tab; the run id selects
 * the notebook). Writing verbs reject with a message that says how to keep a copy.
 */
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { NotebookWidgetFactory } from '@jupyterlab/notebook';
import { Contents, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { api, IRecordedNotebook } from './api';

export const DRIVE_NAME = 'nbtrack-runs';
const READ_ONLY =
  'Recorded notebooks are read-only (they belong to an nbtrack run). To keep an editable copy, ' +
  'use File → Save Notebook As… or `nbtrack show RUN_ID`.';

interface IEntry {
  notebook: IRecordedNotebook;
  fetched: string;
}

export class RunsDrive implements Contents.IDrive {
  readonly name = DRIVE_NAME;
  readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings();

  get fileChanged(): ISignal<this, Contents.IChangedArgs> {
    return this._fileChanged;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /**
   * Fetch a run's recorded notebook (cached) and return its drive-local path.
   *
   * @param runId - the run
   * @param notebook - the notebook the run belongs to, which selects the server's store
   */
  async prepare(runId: string, notebook: string | null): Promise<string> {
    if (notebook !== null) {
      this._stores.set(runId, notebook);
    }
    const entry = await this._load(runId, true);
    return `${runId}/${fileName(entry.notebook.name, runId)}`;
  }

  async get(localPath: string, options?: Contents.IFetchOptions): Promise<Contents.IModel> {
    const parts = localPath.split('/').filter(p => p);
    const now = new Date().toISOString();
    if (parts.length === 0) {
      const content = [...this._cache.entries()].map(([runId, entry]) =>
        this._fileModel(runId, entry, false)
      );
      return directory('', content, now);
    }
    const runId = parts[0];
    if (parts.length === 1) {
      const entry = this._cache.get(runId);
      return directory(runId, entry ? [this._fileModel(runId, entry, false)] : [], now);
    }
    const entry = await this._load(runId, false);
    return this._fileModel(runId, entry, options?.content !== false);
  }

  async getDownloadUrl(localPath: string): Promise<string> {
    throw new Error(READ_ONLY);
  }

  async newUntitled(options?: Contents.ICreateOptions): Promise<Contents.IModel> {
    throw new Error(READ_ONLY);
  }

  async delete(localPath: string): Promise<void> {
    throw new Error(READ_ONLY);
  }

  async rename(oldLocalPath: string, newLocalPath: string): Promise<Contents.IModel> {
    throw new Error(READ_ONLY);
  }

  async save(
    localPath: string,
    options?: Partial<Contents.IModel>
  ): Promise<Contents.IModel> {
    throw new Error(READ_ONLY);
  }

  async copy(localPath: string, toLocalDir: string): Promise<Contents.IModel> {
    throw new Error(READ_ONLY);
  }

  async createCheckpoint(localPath: string): Promise<Contents.ICheckpointModel> {
    throw new Error(READ_ONLY);
  }

  async listCheckpoints(localPath: string): Promise<Contents.ICheckpointModel[]> {
    return [];
  }

  async restoreCheckpoint(localPath: string, checkpointID: string): Promise<void> {
    throw new Error(READ_ONLY);
  }

  async deleteCheckpoint(localPath: string, checkpointID: string): Promise<void> {
    throw new Error(READ_ONLY);
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._cache.clear();
    Signal.clearData(this);
  }

  private async _load(runId: string, fresh: boolean): Promise<IEntry> {
    const cached = this._cache.get(runId);
    if (cached && !fresh) {
      return cached;
    }
    // A run's recording never changes, but `prepare` refetches so that a notebook signed since
    // (trusted) or a live recording that arrived late shows.
    const notebook = await api.notebook(runId, this._stores.get(runId) ?? null);
    const entry = { notebook, fetched: new Date().toISOString() };
    this._cache.set(runId, entry);
    return entry;
  }

  private _fileModel(runId: string, entry: IEntry, withContent: boolean): Contents.IModel {
    const name = fileName(entry.notebook.name, runId);
    return {
      name,
      path: `${runId}/${name}`,
      type: 'notebook',
      writable: false,
      created: entry.fetched,
      last_modified: entry.fetched,
      mimetype: 'application/x-ipynb+json',
      format: withContent ? 'json' : null,
      content: withContent ? markTrust(entry.notebook) : null
    } as Contents.IModel;
  }

  private _disposed = false;
  private _cache = new Map<string, IEntry>();
  private _stores = new Map<string, string>();
  private _fileChanged = new Signal<this, Contents.IChangedArgs>(this);
}

/**
 * Keep a recorded notebook's document clean: nothing of it can be saved, so closing it must not
 * ask "Save your work" (item 8 of issue 14). Opening marks the model dirty by itself (Lab fills
 * in cell ids and the kernelspec metadata of an older recording), and so would any edit; the
 * flag is put back at once, which also keeps the autosave from calling the drive's `save`.
 */
export function keepClean(context: DocumentRegistry.Context): void {
  const clean = () => {
    if (!context.isDisposed && context.model.dirty) {
      context.model.dirty = false;
    }
  };
  void context.ready.then(() => {
    clean();
    context.model.stateChanged.connect(clean);
    context.model.contentChanged.connect(clean);
  });
}

function fileName(name: string | undefined, runId: string): string {
  const base = (name || `run-${runId.slice(0, 8)}.ipynb`).replace(/[/\\:]/g, '_');
  return base.endsWith('.ipynb') ? base : `${base}.ipynb`;
}

function directory(path: string, content: Contents.IModel[], now: string): Contents.IModel {
  return {
    name: path,
    path,
    type: 'directory',
    writable: false,
    created: now,
    last_modified: now,
    mimetype: '',
    format: 'json',
    content
  } as Contents.IModel;
}

/** A copy of the notebook whose code cells carry the trust the server reported. */
function markTrust(recorded: IRecordedNotebook): Record<string, unknown> {
  const nb = JSON.parse(JSON.stringify(recorded.content)) as {
    cells?: Array<{ cell_type?: string; metadata?: Record<string, unknown> }>;
  };
  for (const cell of nb.cells ?? []) {
    if (cell.cell_type === 'code') {
      cell.metadata = { ...(cell.metadata ?? {}), trusted: recorded.trusted };
    }
  }
  return nb as Record<string, unknown>;
}

/** The widget factory that opens recorded notebooks (see `recordedNotebookFactory`). */
export const RECORDED_FACTORY = 'nbtrack Recorded Notebook';

/**
 * A notebook widget factory for recordings, registered once beside Lab's own: read-only (closing
 * never asks to save), no kernel started, and not Lab's `Notebook` factory, so the notebook
 * tracker's followers (ipywidgets' manager, which reads the kernel of every tracked notebook and
 * threw "Cannot read properties of null (reading 'kernel')" on a kernel-less recording) leave it
 * alone. Returns the factory's name, or null when Lab has no notebook factory to copy.
 */
export function recordedNotebookFactory(registry: DocumentRegistry): string | null {
  if (registry.getWidgetFactory(RECORDED_FACTORY)) {
    return RECORDED_FACTORY;
  }
  const lab = registry.getWidgetFactory('Notebook') as NotebookWidgetFactory | undefined;
  if (!lab || !(lab instanceof NotebookWidgetFactory)) {
    return null;
  }
  const factory = new NotebookWidgetFactory({
    name: RECORDED_FACTORY,
    label: 'Recorded notebook (nbtrack, read-only)',
    fileTypes: ['notebook'],
    modelName: 'notebook',
    readOnly: true,
    preferKernel: false,
    canStartKernel: false,
    shutdownOnClose: false,
    rendermime: lab.rendermime,
    contentFactory: lab.contentFactory,
    mimeTypeService: lab.mimeTypeService,
    editorConfig: lab.editorConfig,
    notebookConfig: lab.notebookConfig
  });
  registry.addWidgetFactory(factory);
  return RECORDED_FACTORY;
}
