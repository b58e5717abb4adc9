/**
 * The question the panel asks before replaying a run whose code the repository does not hold at the
 * run's commit (a planted or unpushed run on a shared tracking server): what differs, then yes/no.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { IProvenance } from './api';
import { h } from './dom';

const DIFF_STYLE =
  'max-height: 40vh; max-width: 80vw; overflow: auto; white-space: pre; ' +
  'font-family: var(--jp-code-font-family); font-size: var(--jp-code-font-size);';

/** Show what differs (lines and the diff) and ask; true only when the user chooses to run it. */
export async function confirmUncommitted(runId: string, provenance: IProvenance): Promise<boolean> {
  const commit = (provenance.commit ?? 'unknown').slice(0, 12);
  const body = new Widget();
  body.addClass('nbtrack-consent');
  body.node.append(
    h(
      'p',
      {},
      `Run ${runId.slice(0, 8)} is ${provenance.reason}. Replaying it would execute code that ` +
        `the repository does not hold at commit ${commit}:`
    ),
    h('ul', {}, ...provenance.differs.map(line => h('li', {}, line))),
    h(
      'pre',
      { class: 'nbtrack-consent-diff', style: DIFF_STYLE },
      provenance.diff || '(no diff recorded)'
    ),
    h('p', {}, 'Run it only if you trust whoever recorded it.')
  );
  const answer = await showDialog({
    title: 'Replay code that is not committed?',
    body,
    buttons: [Dialog.cancelButton({ label: 'Cancel' }), Dialog.warnButton({ label: 'Run it anyway' })]
  });
  return answer.button.accept;
}
