/**
 * Where to see runs in MLflow's own UI: a link for a server store, the `mlflow ui` command (with a
 * Copy button) for the embedded one.
 */
import { h } from './dom';

/** A command to copy, with a Copy button (the `mlflow ui` hint, `nbtrack sync`). */
export function copyable(label: string, command: string): HTMLElement {
  const copy = h('button', { class: 'jp-Button nbtrack-copy', title: 'Copy the command' }, 'Copy');
  copy.addEventListener('click', () => {
    void navigator.clipboard?.writeText(command).then(
      () => (copy.textContent = 'Copied'),
      () => (copy.textContent = 'Select and copy')
    );
  });
  return h(
    'div',
    { class: 'nbtrack-copyable' },
    h('span', {}, label),
    h('code', { class: 'nbtrack-command', title: command }, command),
    copy
  );
}

/**
 * Where to browse the runs in MLflow's own UI: its link for a server store; for the embedded one,
 * the `mlflow ui` command that serves it.
 */
export function renderBrowse(browse: { url: string | null; command: string | null }): HTMLElement | null {
  if (browse.url) {
    return h(
      'div',
      { class: 'nbtrack-browse' },
      h(
        'a',
        {
          class: 'nbtrack-mlflow-link',
          href: browse.url,
          target: '_blank',
          rel: 'noopener noreferrer',
          title: browse.url
        },
        'Open in MLflow UI ↗'
      )
    );
  }
  if (browse.command) {
    return h('div', { class: 'nbtrack-browse' }, copyable('To browse in MLflow’s UI:', browse.command));
  }
  return null;
}
