/**
 * What the compare view shows for the selected runs: the bulk-action bar, the charts (metric
 * histories, metric against param, parallel coordinates) and the output gallery.
 */
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

import { h } from '../dom';
import { ACTIONS, runAction } from './actions';
import { compareApi, IHistories } from './api';
import { chartBox, draw, historySpec, IRunLabel, parallelSpec, scatterSpec } from './charts';
import { Gallery } from './gallery';
import { CompareModel } from './model';

/** Charts drawn at once at most (a chart per metric). */
const MAX_HISTORY_CHARTS = 4;

export class SelectionView extends Panel {
  constructor(model: CompareModel, rendermime: IRenderMimeRegistry) {
    super();
    this._model = model;
    this._rendermime = rendermime;
    this.addClass('nbtrack-cmp-selection');
    this._actions.addClass('nbtrack-cmp-actions');
    this._charts.addClass('nbtrack-cmp-charts');
    this._gallery = new Gallery(rendermime);
    this.addWidget(this._actions);
    this.addWidget(this._charts);
    this.addWidget(this._gallery);
    this._actions.node.addEventListener('click', this._onAction);
    this._charts.node.addEventListener('change', () => void this._drawCharts(false));
    model.selectionChanged.connect(this._schedule, this);
    // Charts take their colours from the theme: redraw them when it changes.
    this._themeWatch = new MutationObserver(() => void this._drawCharts(false));
    this._themeWatch.observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-light'] });
    this._renderActions();
    void this._update();
  }

  dispose(): void {
    this._themeWatch.disconnect();
    this._model.selectionChanged.disconnect(this._schedule, this);
    super.dispose();
  }

  private _schedule(): void {
    this._renderActions();
    clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this._update(), 150);
  }

  private _renderActions(): void {
    const n = this._model.selected.size;
    const buttons = ACTIONS.map(a =>
      h(
        'button',
        {
          class: 'jp-Button nbtrack-cmp-action',
          'data-action': a.action,
          title: a.title,
          disabled: a.needs === 'one' ? n !== 1 : n === 0
        },
        a.label
      )
    );
    this._actions.node.replaceChildren(
      h('span', { class: 'nbtrack-cmp-selected-count' }, n ? `${n} selected` : 'No runs selected'),
      ...buttons,
      this._message
    );
  }

  private _onAction = (event: MouseEvent): void => {
    const button = (event.target as HTMLElement).closest<HTMLButtonElement>('button[data-action]');
    if (!button) {
      return;
    }
    this._message.classList.remove('nbtrack-error');
    runAction(button.dataset.action as string, this._model, this._rendermime).then(
      message => {
        if (message !== null) {
          this._message.textContent = message;
          void this._model.reload();
          this._schedule();
        }
      },
      error => {
        this._message.classList.add('nbtrack-error');
        this._message.textContent = String((error as Error).message ?? error).split('\n')[0];
      }
    );
  };

  private async _update(): Promise<void> {
    const ids = this._model.selectedIds();
    const generation = ++this._generation;
    this._histories = null;
    if (ids.length) {
      try {
        const histories = await compareApi.histories(this._model.query.notebook, ids);
        if (generation !== this._generation) {
          return;
        }
        this._histories = histories;
      } catch (error) {
        this._charts.node.replaceChildren(
          h('div', { class: 'nbtrack-error' }, String((error as Error).message).split('\n')[0])
        );
        return;
      }
    }
    await Promise.all([this._drawCharts(true), this._gallery.showRuns(this._model.query.notebook, ids)]);
  }

  /** The chart controls and the charts; `fresh` when the selection changed (default choices). */
  private async _drawCharts(fresh: boolean): Promise<void> {
    const m = this._model;
    const rows = [...m.selected.values()];
    if (!rows.length || !this._histories) {
      this._charts.node.replaceChildren(
        h('p', { class: 'nbtrack-none' }, 'Select runs (checkbox, shift-click, or space) to chart and compare them.')
      );
      return;
    }
    const keys = this._histories.keys;
    const chosen = fresh ? this._defaultMetrics(keys) : this._checked('metric');
    const params = m.columns.filter(c => c.group === 'param' && c.varies);
    const metrics = m.columns.filter(c => c.group === 'metric');
    const param = fresh ? (params[0]?.key ?? '') : this._choice('param', params[0]?.key ?? '');
    const metric = fresh ? (metrics[0]?.key ?? '') : this._choice('metric', metrics[0]?.key ?? '');
    const labels: IRunLabel[] = rows.map(r => ({ id: r.run_id, label: r.name || r.run_id.slice(0, 8) }));
    const controls = h(
      'div',
      { class: 'nbtrack-cmp-chart-controls' },
      h('span', {}, 'Metrics: '),
      keys.map(k => {
        const box = h('input', { type: 'checkbox', 'data-metric': k });
        box.checked = chosen.includes(k);
        return h('label', { class: 'nbtrack-cmp-metric-pick' }, box, ` ${k}`);
      }),
      select('param', 'Param', params.map(c => [c.key, c.label]), param),
      select('metric', 'Metric', metrics.map(c => [c.key, c.label]), metric)
    );
    const drawing: Array<Promise<void>> = [];
    const boxes: HTMLElement[] = [];
    for (const key of chosen) {
      const { box, target } = chartBox('nbtrack-cmp-history', `${key} by step`);
      box.dataset.metric = key;
      const { spec, series } = historySpec(key, labels, this._histories.histories);
      boxes.push(box);
      drawing.push(draw(target, spec, series));
    }
    if (param && metric) {
      const names = { x: label(m, param), y: label(m, metric) };
      const { box, target } = chartBox('nbtrack-cmp-scatter', `${names.y} against ${names.x}`);
      boxes.push(box);
      const points = rows.map((r, i) => ({ run: labels[i].label, x: r.values[param] ?? null, y: r.values[metric] ?? null }));
      drawing.push(draw(target, scatterSpec(names, points), rows.length));
    }
    const dims = [...params, ...metrics.filter(c => c.key === metric)].map(c => ({ key: c.key, label: c.label }));
    if (dims.length >= 2) {
      const { box, target } = chartBox('nbtrack-cmp-parallel', 'Parallel coordinates (varying params)');
      boxes.push(box);
      const runs = rows.map((r, i) => ({ run: labels[i].label, values: r.values }));
      drawing.push(draw(target, parallelSpec(dims, runs), rows.length));
    }
    this._charts.node.replaceChildren(controls, h('div', { class: 'nbtrack-cmp-chart-grid' }, boxes));
    try {
      await Promise.all(drawing);
    } catch (error) {
      this._charts.node.append(h('div', { class: 'nbtrack-error' }, `Chart failed: ${String(error).split('\n')[0]}`));
    }
  }

  private _defaultMetrics(keys: string[]): string[] {
    const histories = Object.values(this._histories?.histories ?? {});
    const stepped = keys.filter(k => histories.some(h => (h[k]?.length ?? 0) > 1));
    return (stepped.length ? stepped : keys).slice(0, MAX_HISTORY_CHARTS);
  }

  private _checked(kind: string): string[] {
    return [...this._charts.node.querySelectorAll<HTMLInputElement>(`input[data-${kind}]`)]
      .filter(b => b.checked)
      .map(b => b.getAttribute(`data-${kind}`) as string);
  }

  private _choice(name: string, fallback: string): string {
    const el = this._charts.node.querySelector<HTMLSelectElement>(`select[data-choice="${name}"]`);
    return el?.value || fallback;
  }

  private _model: CompareModel;
  private _rendermime: IRenderMimeRegistry;
  private _actions = new Widget();
  private _charts = new Widget();
  private _gallery: Gallery;
  private _message = h('span', { class: 'nbtrack-cmp-message', role: 'status' });
  private _histories: IHistories | null = null;
  private _generation = 0;
  private _timer = 0;
  private _themeWatch: MutationObserver;
}

function label(model: CompareModel, key: string): string {
  const col = model.columns.find(c => c.key === key);
  return col ? `${col.group === 'param' ? 'param ' : ''}${col.label}` : key;
}

function select(name: string, label: string, options: Array<[string, string]>, value: string): HTMLElement {
  const el = h(
    'select',
    { 'data-choice': name, 'aria-label': label },
    options.map(([key, text]) => h('option', { value: key, selected: key === value }, text))
  );
  return h('label', { class: 'nbtrack-cmp-choice' }, `${label} `, el);
}
