/**
 * "Clone with new parameters" in a run's details: a form generated from the notebook's `parameters`
 * cell (as the run recorded it; prefilled with the run's values), and the clone job it starts on
 * the server (one trial of the run, in an isolated workspace: nbtrack/server/run_handlers.py).
 * A value the server refuses is shown under its field; no `parameters` cell: the button is
 * disabled and the section says why. The state lives here, by run id, so the panel may re-render
 * the details (a poll, a rename) without losing the form or the job's progress.
 */
import { api, ApiError, ICloneResult, IJob, IParameterField, IParameterForm } from './api';
import { h } from './dom';
import { RunsModel } from './model';

const POLL_MS = 1000;

interface ICloneState {
  form: IParameterForm | null;
  formError: string | null;
  open: boolean;
  /** What each field holds now, as typed (checkboxes: 'true' / 'false'). */
  typed: Record<string, string>;
  fieldErrors: Record<string, string>;
  submitError: string | null;
  submitting: boolean;
  job: IJob | null;
  /** Where the section is on screen now (a re-render makes a new one). */
  node: HTMLElement;
  focus: string | null;
}

const states = new Map<string, ICloneState>();

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function asText(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  return value === null || value === undefined ? '' : JSON.stringify(value);
}

/** A field's text as the value to send; text that is no value of its kind goes as typed, for the
 * server to refuse in one line under the field. */
export function parseField(field: IParameterField, text: string): unknown {
  switch (field.input) {
    case 'int':
    case 'float': {
      const trimmed = text.trim();
      const number = Number(trimmed);
      return trimmed !== '' && Number.isFinite(number) ? number : text;
    }
    case 'bool':
      return text === 'true';
    case 'str':
      return text;
    default:
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
  }
}

function fieldId(runId: string, name: string): string {
  return `nbtrack-clone-${runId.slice(0, 12)}-${name}`;
}

/** The section under a run's actions; `model` refreshes the list when the clone ends. */
export function renderClone(runId: string, model: RunsModel): HTMLElement {
  const node = h('section', { class: 'nbtrack-section nbtrack-clone', 'aria-label': 'Clone with new parameters' });
  let state = states.get(runId);
  if (!state) {
    state = {
      form: null,
      formError: null,
      open: false,
      typed: {},
      fieldErrors: {},
      submitError: null,
      submitting: false,
      job: null,
      node,
      focus: null
    };
    states.set(runId, state);
    void load(runId, state, model);
  }
  state.node = node;
  paint(runId, state, model);
  return node;
}

async function load(runId: string, state: ICloneState, model: RunsModel): Promise<void> {
  try {
    state.form = await api.parameters(model.notebook, runId);
    for (const field of state.form.parameters) {
      state.typed[field.name] = field.input === 'bool' ? String(field.value === true) : asText(field.value);
    }
  } catch (error) {
    state.formError = messageOf(error);
    states.delete(runId); // try again next time the run is opened
  }
  paint(runId, state, model);
}

function paint(runId: string, state: ICloneState, model: RunsModel): void {
  const node = state.node;
  const form = state.form;
  const busy = state.submitting || (state.job !== null && isActive(state.job));
  const disabled = form === null || form.parameters.length === 0 || busy;
  const why = state.formError ?? form?.why ?? null;
  const button = h(
    'button',
    {
      class: 'jp-Button nbtrack-clone-button',
      disabled,
      'aria-expanded': state.open ? 'true' : 'false',
      title: why ?? (form === null ? 'Reading the notebook’s parameters cell…' : 'Run this notebook again with other values')
    },
    'Clone with new parameters…'
  );
  button.addEventListener('click', () => {
    state.open = !state.open;
    state.focus = state.open && form?.parameters.length ? form.parameters[0].name : null;
    paint(runId, state, model);
  });
  const parts: Node[] = [h('div', { class: 'nbtrack-actions' }, button)];
  if (why) {
    parts.push(h('p', { class: 'nbtrack-clone-why', role: 'note' }, why));
  }
  if (state.open && form && form.parameters.length) {
    parts.push(renderForm(runId, state, model, form.parameters));
  }
  if (state.job) {
    parts.push(renderJob(state.job, model));
  }
  node.replaceChildren(...parts);
  if (state.focus) {
    const target = node.querySelector<HTMLElement>(`#${CSS.escape(fieldId(runId, state.focus))}`);
    state.focus = null;
    target?.focus();
  }
}

function renderForm(
  runId: string,
  state: ICloneState,
  model: RunsModel,
  fields: IParameterField[]
): HTMLElement {
  const formNode = h('form', { class: 'nbtrack-clone-form', 'aria-label': 'new parameter values' });
  for (const field of fields) {
    const id = fieldId(runId, field.name);
    const error = state.fieldErrors[field.name];
    const described = [field.help ? `${id}-help` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ');
    const input = h('input', {
      id,
      class: 'jp-mod-styled nbtrack-clone-input',
      name: field.name,
      type: field.input === 'bool' ? 'checkbox' : 'text',
      inputmode: field.input === 'int' ? 'numeric' : field.input === 'float' ? 'decimal' : null,
      'data-input': field.input,
      'aria-invalid': error ? 'true' : null,
      'aria-describedby': described || null
    });
    if (field.input === 'bool') {
      input.checked = state.typed[field.name] === 'true';
      input.addEventListener('change', () => {
        state.typed[field.name] = String(input.checked);
      });
    } else {
      input.value = state.typed[field.name] ?? '';
      input.addEventListener('input', () => {
        state.typed[field.name] = input.value;
      });
    }
    formNode.append(
      h(
        'div',
        { class: 'nbtrack-clone-field' },
        h('label', { for: id }, field.name, h('span', { class: 'nbtrack-clone-kind' }, ` ${field.input}`)),
        input,
        field.help ? h('span', { id: `${id}-help`, class: 'nbtrack-clone-help' }, field.help) : null,
        error ? h('div', { id: `${id}-error`, class: 'nbtrack-error nbtrack-clone-field-error', role: 'alert' }, error) : null
      )
    );
  }
  const submit = h(
    'button',
    { class: 'jp-Button nbtrack-clone-submit', type: 'submit', disabled: state.submitting },
    'Start clone'
  );
  const cancel = h('button', { class: 'jp-Button nbtrack-clone-cancel', type: 'button' }, 'Cancel');
  cancel.addEventListener('click', () => {
    state.open = false;
    paint(runId, state, model);
    state.node.querySelector<HTMLElement>('.nbtrack-clone-button')?.focus();
  });
  formNode.addEventListener('keydown', event => {
    if (event.key === 'Escape') {
      event.stopPropagation(); // the form's own Escape closes the form, not the details
      cancel.click();
    }
  });
  formNode.addEventListener('submit', event => {
    event.preventDefault();
    void submitClone(runId, state, model, fields);
  });
  formNode.append(
    state.submitError
      ? h('div', { class: 'nbtrack-error nbtrack-clone-error', role: 'alert' }, state.submitError)
      : '',
    h('div', { class: 'nbtrack-actions' }, submit, cancel)
  );
  return formNode;
}

/** The values that differ from the prefilled ones (the others are the run's own). */
function changedValues(state: ICloneState, fields: IParameterField[]): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const field of fields) {
    const value = parseField(field, state.typed[field.name] ?? '');
    if (JSON.stringify(value) !== JSON.stringify(field.value)) {
      values[field.name] = value;
    }
  }
  return values;
}

async function submitClone(
  runId: string,
  state: ICloneState,
  model: RunsModel,
  fields: IParameterField[]
): Promise<void> {
  state.submitting = true;
  state.fieldErrors = {};
  state.submitError = null;
  paint(runId, state, model);
  let job: IJob;
  try {
    job = await api.clone(runId, changedValues(state, fields), model.notebook);
  } catch (error) {
    const field = error instanceof ApiError ? error.detail.parameter : undefined;
    if (typeof field === 'string' && fields.some(f => f.name === field)) {
      state.fieldErrors[field] = messageOf(error);
      state.focus = field;
    } else {
      state.submitError = messageOf(error);
    }
    state.submitting = false;
    paint(runId, state, model);
    return;
  }
  state.submitting = false;
  state.open = false;
  state.job = job;
  paint(runId, state, model);
  while (isActive(job)) {
    await new Promise(resolve => setTimeout(resolve, POLL_MS));
    try {
      job = await api.job(job.job_id);
    } catch (error) {
      state.submitError = messageOf(error);
      break;
    }
    state.job = job;
    paint(runId, state, model);
  }
  // The clone is a run of this notebook: the list shows it.
  void model.refresh();
}

function isActive(job: IJob): boolean {
  return job.state === 'queued' || job.state === 'running';
}

function renderJob(job: IJob, model: RunsModel): HTMLElement {
  const node = h('div', { class: 'nbtrack-clone-job', role: 'status', 'aria-live': 'polite' });
  if (isActive(job)) {
    const done = job.progress?.done ?? 0;
    const total = job.progress?.total ?? 0;
    const bar = h('progress', { class: 'nbtrack-progress-bar', 'aria-label': 'clone progress' });
    if (total > 0) {
      bar.max = total;
      bar.value = done;
    }
    const label =
      job.state === 'queued' ? 'Clone queued…' : total > 0 ? `Cloning: cell ${done} of ${total}` : 'Cloning…';
    node.append(h('div', { class: 'nbtrack-replay-progress' }, bar, h('span', {}, label)));
    return node;
  }
  if (job.state === 'failed') {
    node.append(h('div', { class: 'nbtrack-error', role: 'alert' }, `The clone could not run: ${job.error ?? 'unknown error'}`));
    return node;
  }
  const result = job.result as unknown as ICloneResult | null;
  const newId = result?.run_id ?? null;
  const status = result?.status ?? 'unknown';
  const open = newId ? h('button', { class: 'jp-Button nbtrack-clone-open' }, 'Show the new run') : null;
  open?.addEventListener('click', () => model.select(newId as string));
  node.append(
    h(
      'div',
      { class: 'nbtrack-clone-result' },
      'New run ',
      h('code', {}, newId ? newId.slice(0, 8) : '(none)'),
      ' ',
      h('span', { class: `nbtrack-status nbtrack-status-${status}` }, status),
      result?.error ? h('div', { class: 'nbtrack-clone-failure' }, result.error) : null,
      open
    )
  );
  return node;
}
