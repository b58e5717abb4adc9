/**
 * A run's details, shown in place of the panel's list: its head, badges, what a pending upload
 * means, its actions (replay, open its notebook, MLflow's UI, rename, note, archive), its note
 * rendered from Markdown, and its recorded sections. Class names are part of the panel's contract.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { IRunDetail } from './api';
import { h, section } from './dom';
import { IRemote, RunsModel } from './model';
import { copyable } from './browse';
import { renderClone } from './clone';
import { keyValues, renderBadges, renderData } from './views';

export interface IDetailsContext {
  model: RunsModel;
  openNotebook: (runId: string) => Promise<void>;
  rendermime: IRenderMimeRegistry | null;
}

export function renderDetails(
  remote: IRemote<IRunDetail>,
  runId: string,
  ctx: IDetailsContext
): { node: HTMLElement; replayNode: HTMLElement | null } {
  const node = h('div', { class: 'nbtrack-details', 'data-run-id': runId });
  if (remote.loading) {
    node.append(h('div', { class: 'nbtrack-loading' }, 'Loading the run…'));
    return { node, replayNode: null };
  }
  if (remote.error !== null || remote.data === null) {
    node.append(h('div', { class: 'nbtrack-error', role: 'alert' }, remote.error ?? ''));
    return { node, replayNode: null };
  }
  const run = remote.data;
  const replayNode = h('div', { class: 'nbtrack-replay' });
  const error = ctx.model.actionError;
  node.append(
    renderHead(run, ctx),
    renderBadges(run) ?? '',
    run.pending_upload ? pendingNote(run) : '',
    renderActions(run, ctx),
    error ? h('div', { class: 'nbtrack-error nbtrack-action-error', role: 'alert' }, error) : '',
    replayNode,
    run.pending_upload ? '' : renderClone(run.run_id, ctx.model),
    renderNote(run, ctx),
    section('nbtrack-params', 'Parameters', keyValues(run.params), 'none'),
    section('nbtrack-metrics', 'Metrics', keyValues(run.metrics), 'none'),
    section('nbtrack-environment', 'Environment', keyValues(run.environment), 'not recorded'),
    section('nbtrack-data', 'Data versions', renderData(run.data), 'no DVC data'),
    section('nbtrack-git', 'Git', keyValues(run.git), 'not a git repository'),
    section('nbtrack-notebook-info', 'Notebook', keyValues(run.notebook_info), 'not recorded'),
    section(
      'nbtrack-artifacts-section',
      'Artifacts',
      run.artifacts && run.artifacts.length
        ? h(
            'ul',
            { class: 'nbtrack-artifacts' },
            run.artifacts.map(a => h('li', { title: a }, a))
          )
        : null,
      'none'
    )
  );
  return { node, replayNode };
}

function renderHead(run: IRunDetail, ctx: IDetailsContext): HTMLElement {
  const name = run.name || run.run_id.slice(0, 8);
  const title = h('h2', { class: 'nbtrack-details-name', title: `${run.name ?? ''} (${run.run_id})` }, name);
  const rename = h(
    'button',
    { class: 'jp-Button nbtrack-rename', title: 'Rename this run (in MLflow too)' },
    'Rename'
  );
  const head = h(
    'div',
    { class: 'nbtrack-details-head' },
    title,
    h('span', { class: `nbtrack-status nbtrack-status-${run.status}` }, run.status),
    h('code', { class: 'nbtrack-run-id', title: `run id ${run.run_id}` }, run.run_id),
    rename
  );
  rename.addEventListener('click', () => {
    const input = h('input', {
      class: 'jp-mod-styled nbtrack-rename-input',
      'aria-label': 'new run name',
      value: run.name ?? ''
    });
    const finish = async (save: boolean) => {
      if (save && input.value.trim() && input.value.trim() !== run.name) {
        await ctx.model.act(run.run_id, 'rename', { name: input.value.trim() });
      } else {
        input.replaceWith(title);
        rename.focus();
      }
    };
    input.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === 'Escape') {
        event.preventDefault();
        event.stopPropagation();
        void finish(event.key === 'Enter');
      }
    });
    title.replaceWith(input);
    input.focus();
    input.select();
  });
  return head;
}

function pendingNote(run: IRunDetail): HTMLElement {
  return h(
    'div',
    { class: 'nbtrack-pending-note', role: 'note' },
    h('b', {}, 'Pending upload. '),
    run.upload_note ??
      'This run is kept in the local spool until the tracking server takes it; run `nbtrack sync`.',
    ' Its record is complete here; other machines and MLflow’s UI see it once ',
    h('code', {}, 'nbtrack sync'),
    ' has uploaded it.'
  );
}

function renderActions(run: IRunDetail, ctx: IDetailsContext): HTMLElement {
  const m = ctx.model;
  const replay = h(
    'button',
    {
      class: 'jp-Button nbtrack-replay-button',
      title: 'Re-execute this run on its recorded code, parameters and data'
    },
    'Replay'
  );
  replay.addEventListener('click', () => void m.replay(run.run_id));
  const open = h('button', { class: 'jp-Button nbtrack-open-notebook' }, 'Open recorded notebook');
  open.addEventListener('click', () => {
    open.disabled = true;
    void ctx.openNotebook(run.run_id).finally(() => {
      open.disabled = false;
    });
  });
  const archive = h(
    'button',
    {
      class: 'jp-Button nbtrack-archive',
      title: 'Archive: MLflow’s soft delete; the run can be restored',
      disabled: !!run.pending_upload
    },
    'Archive'
  );
  archive.addEventListener('click', async () => {
    const answer = await showDialog({
      title: 'Archive this run?',
      body: `Run ${run.name ?? run.run_id} leaves the list; MLflow keeps it (restorable) until it is purged.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Archive' })]
    });
    if (answer.button.accept) {
      await m.act(run.run_id, 'archive');
    }
  });
  const browse = run.mlflow_url
    ? h(
        'a',
        {
          class: 'nbtrack-mlflow-link',
          href: run.mlflow_url,
          target: '_blank',
          rel: 'noopener noreferrer',
          title: run.mlflow_url
        },
        'Open in MLflow UI ↗'
      )
    : null;
  const actions = h('div', { class: 'nbtrack-actions' }, replay, open, archive, browse);
  if (!browse && !run.pending_upload && m.browse.command) {
    return h('div', {}, actions, copyable('To browse in MLflow’s UI:', m.browse.command));
  }
  return actions;
}

function renderNote(run: IRunDetail, ctx: IDetailsContext): HTMLElement {
  const note = run.note ?? '';
  const body = h('div', { class: 'nbtrack-note-body' });
  const edit = h(
    'button',
    { class: 'jp-Button nbtrack-edit-note', title: 'A Markdown note, shown in MLflow’s UI too' },
    note ? 'Edit note' : 'Add note'
  );
  const show = () => {
    body.replaceChildren();
    if (!note) {
      body.append(h('p', { class: 'nbtrack-none' }, 'no note'));
    } else if (ctx.rendermime) {
      const renderer = ctx.rendermime.createRenderer('text/markdown');
      renderer.addClass('nbtrack-note-rendered');
      void renderer.renderModel(ctx.rendermime.createModel({ data: { 'text/markdown': note } }));
      body.append(renderer.node);
    } else {
      body.append(h('pre', { class: 'nbtrack-note-rendered' }, note));
    }
  };
  edit.addEventListener('click', () => {
    const area = h('textarea', {
      class: 'jp-mod-styled nbtrack-note-input',
      rows: 5,
      'aria-label': 'run note (Markdown)'
    });
    area.value = note;
    const save = h('button', { class: 'jp-Button nbtrack-save-note' }, 'Save note');
    const cancel = h('button', { class: 'jp-Button' }, 'Cancel');
    save.addEventListener('click', () => void ctx.model.act(run.run_id, 'note', { note: area.value }));
    cancel.addEventListener('click', () => {
      show();
      edit.hidden = false;
      edit.focus();
    });
    area.addEventListener('keydown', event => {
      if (event.key === 'Escape') {
        event.stopPropagation();
        cancel.click();
      }
    });
    edit.hidden = true;
    body.replaceChildren(area, h('div', { class: 'nbtrack-actions' }, save, cancel));
    area.focus();
  });
  show();
  return h(
    'section',
    { class: 'nbtrack-section nbtrack-note' },
    h('h3', {}, 'Note ', edit),
    body
  );
}
