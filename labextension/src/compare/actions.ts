/**
 * Bulk actions on the selected runs (CONTRACT "Actions"): tag/untag, archive/restore, purge (with
 * a confirmation), and rename / Markdown note for one run. Each asks what it needs in a dialog,
 * calls the server, and reports one line back; the caller reloads the table.
 */
import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { api } from '../api';
import { h } from '../dom';
import { Action, compareApi } from './api';
import { CompareModel } from './model';

export interface IActionButton {
  action: string;
  label: string;
  title: string;
  /** How many selected runs it needs: 'one' or 'some'. */
  needs: 'one' | 'some';
}

export const ACTIONS: IActionButton[] = [
  { action: 'tag', label: 'Tag…', title: 'Set a tag (key=value) on the selected runs', needs: 'some' },
  { action: 'untag', label: 'Untag…', title: 'Remove a tag from the selected runs', needs: 'some' },
  { action: 'archive', label: 'Archive', title: 'Archive the selected runs (restorable)', needs: 'some' },
  { action: 'restore', label: 'Restore', title: 'Restore the selected archived runs', needs: 'some' },
  { action: 'purge', label: 'Purge…', title: 'Delete archived runs and their artifacts for good', needs: 'some' },
  { action: 'rename', label: 'Rename…', title: 'Rename the selected run', needs: 'one' },
  { action: 'note', label: 'Note…', title: "Edit the selected run's Markdown note", needs: 'one' }
];

/**
 * Run action `name` on the model's selection; returns a one-line message (done or why not),
 * or null when the user cancelled.
 */
export async function runAction(
  name: string,
  model: CompareModel,
  rendermime: IRenderMimeRegistry
): Promise<string | null> {
  const runs = model.selectedIds();
  const body = await askBody(name, model, rendermime);
  if (body === null) {
    return null;
  }
  const action = (name === 'untag' ? 'tag' : name) as Action;
  const result = await compareApi.action(model.query.notebook, action, { runs, ...body });
  if (action === 'archive' || action === 'restore' || action === 'purge') {
    // They leave this list (archived runs show only with the "Archived" toggle): unselect them.
    for (const id of result.done) {
      model.selected.delete(id);
    }
  }
  const n = result.done.length;
  return `${name}: ${n} run${n === 1 ? '' : 's'} done`;
}

async function askBody(
  name: string,
  model: CompareModel,
  rendermime: IRenderMimeRegistry
): Promise<Record<string, unknown> | null> {
  const count = model.selected.size;
  const runs = `${count} run${count === 1 ? '' : 's'}`;
  switch (name) {
    case 'tag': {
      const got = await InputDialog.getText({
        title: `Tag ${runs}`,
        label: 'key=value',
        placeholder: 'team=vision'
      });
      const text = got.button.accept ? (got.value ?? '').trim() : '';
      const at = text.indexOf('=');
      if (at < 1) {
        return null;
      }
      return { set: { [text.slice(0, at).trim()]: text.slice(at + 1).trim() }, remove: [] };
    }
    case 'untag': {
      const got = await InputDialog.getText({ title: `Remove a tag from ${runs}`, label: 'Tag key' });
      const key = got.button.accept ? (got.value ?? '').trim() : '';
      return key ? { set: {}, remove: [key] } : null;
    }
    case 'rename': {
      const row = [...model.selected.values()][0];
      const got = await InputDialog.getText({ title: 'Rename run', label: 'Name', text: row?.name ?? '' });
      const value = got.button.accept ? (got.value ?? '').trim() : '';
      return value ? { name: value } : null;
    }
    case 'note':
      return editNote(model, rendermime);
    case 'purge': {
      const ok = await showDialog({
        title: `Purge ${runs}?`,
        body: 'Purged runs and their artifacts are deleted for good (only archived runs can be purged).',
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Purge' })]
      });
      return ok.button.accept ? {} : null;
    }
    default:
      return {};
  }
}

/** The Markdown note editor: a text area and its preview (rendered untrusted). */
async function editNote(
  model: CompareModel,
  rendermime: IRenderMimeRegistry
): Promise<Record<string, unknown> | null> {
  const row = [...model.selected.values()][0];
  // The rows say only whether a run has a note; its text comes with the run's details.
  let initial = '';
  if (row) {
    try {
      initial = (await api.run(row.run_id, model.query.notebook)).note ?? '';
    } catch {
      initial = '';
    }
  }
  const area = h('textarea', {
    class: 'nbtrack-cmp-note-text',
    rows: 10,
    'aria-label': 'Note (Markdown)'
  });
  area.value = initial;
  const preview = h('div', { class: 'nbtrack-cmp-note-preview' });
  const renderer = rendermime.createRenderer('text/markdown');
  preview.append(renderer.node);
  const render = () =>
    void renderer.renderModel(
      rendermime.createModel({ data: { 'text/markdown': area.value }, trusted: false })
    );
  area.addEventListener('input', render);
  render();
  const body = new Widget({ node: h('div', { class: 'nbtrack-cmp-note' }, area, preview) });
  const result = await showDialog({
    title: `Note on ${row?.name || row?.run_id}`,
    body,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save note' })],
    focusNodeSelector: 'textarea'
  });
  const text = area.value;
  renderer.dispose();
  return result.button.accept ? { note: text } : null;
}
