/**
 * Charts of the selected runs, drawn by Vega-Lite through vega-embed (JupyterLab's own chart
 * family): metric histories (a line per run over steps), a metric against a param, and
 * parallel coordinates over the varying params and a metric.
 *
 * vega is loaded on first use (a chunk of its own): opening Lab does not pay for it.
 * Each chart's element gets `data-drawn="true"` (and `data-series`) once its view has run.
 */
import type { TopLevelSpec } from 'vega-lite';

import { h } from '../dom';
import { CellValue, HistoryPoint } from './api';

type Embed = typeof import('vega-embed').default;
let embedding: Promise<Embed> | null = null;

function loadEmbed(): Promise<Embed> {
  embedding ??= import('vega-embed').then(m => m.default);
  return embedding;
}

/** Vega config from JupyterLab's theme variables, so charts follow light and dark themes. */
function themeConfig(): Record<string, unknown> {
  const css = getComputedStyle(document.body);
  const v = (name: string, fallback: string) => css.getPropertyValue(name).trim() || fallback;
  const text = v('--jp-ui-font-color1', '#000');
  const muted = v('--jp-ui-font-color2', '#555');
  const grid = v('--jp-border-color2', '#ddd');
  const font = v('--jp-ui-font-family', 'sans-serif');
  const axis = {
    labelColor: muted,
    titleColor: text,
    gridColor: grid,
    domainColor: muted,
    tickColor: muted,
    labelFont: font,
    titleFont: font
  };
  return {
    background: null,
    font,
    axis,
    legend: { labelColor: text, titleColor: text, labelFont: font, titleFont: font, labelLimit: 160 },
    title: { color: text, font, fontSize: 12 },
    view: { stroke: grid },
    rule: { color: muted },
    range: { category: { scheme: 'tableau10' } }
  };
}

/** Draw `spec` into `node`; marks the node drawn once vega's view has rendered. */
export async function draw(node: HTMLElement, spec: TopLevelSpec, series: number): Promise<void> {
  node.dataset.drawn = 'false';
  const embed = await loadEmbed();
  const result = await embed(node, spec, {
    renderer: 'svg',
    actions: { export: true, source: false, compiled: false, editor: false },
    config: themeConfig() as never
  });
  await result.view.runAsync();
  node.dataset.drawn = 'true';
  node.dataset.series = String(series);
}

export interface IRunLabel {
  id: string;
  label: string;
}

/** One chart per metric: a line per run over steps. */
export function historySpec(
  metric: string,
  runs: IRunLabel[],
  histories: Record<string, Record<string, HistoryPoint[]>>
): { spec: TopLevelSpec; series: number } {
  const values: Array<Record<string, unknown>> = [];
  let series = 0;
  for (const run of runs) {
    const points = histories[run.id]?.[metric] ?? [];
    if (points.length) {
      series++;
    }
    for (const [step, value] of points) {
      values.push({ run: run.label, step, value });
    }
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 'container',
    height: 200,
    data: { values },
    mark: { type: 'line', point: values.length <= 200, tooltip: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'value', type: 'quantitative', title: metric, scale: { zero: false } },
      color: { field: 'run', type: 'nominal', title: 'run' }
    }
  } as TopLevelSpec;
  return { spec, series };
}

function numeric(values: CellValue[]): boolean {
  return values.every(v => v === null || typeof v === 'number' || (v !== '' && !isNaN(Number(v))));
}

/** A metric's value against a param's, a point per run. */
export function scatterSpec(
  labels: { x: string; y: string },
  points: Array<{ run: string; x: CellValue; y: CellValue }>
): TopLevelSpec {
  const quantitative = numeric(points.map(p => p.x));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 'container',
    height: 220,
    data: {
      values: points.map(p => ({ ...p, x: quantitative && p.x !== null ? Number(p.x) : p.x }))
    },
    mark: { type: 'point', filled: true, size: 80, tooltip: true },
    encoding: {
      x: { field: 'x', type: quantitative ? 'quantitative' : 'nominal', title: labels.x },
      y: { field: 'y', type: 'quantitative', title: labels.y, scale: { zero: false } },
      color: { field: 'run', type: 'nominal', title: 'run' }
    }
  } as TopLevelSpec;
}

/**
 * Parallel coordinates: each dimension scaled to [0, 1] here (numbers by min/max, text by rank
 * of its sorted values), one line per run across the dimensions; raw values in the tooltip.
 */
export function parallelSpec(
  dims: Array<{ key: string; label: string }>,
  runs: Array<{ run: string; values: Record<string, CellValue> }>
): TopLevelSpec {
  const values: Array<Record<string, unknown>> = [];
  dims.forEach((dim, order) => {
    const raw = runs.map(r => r.values[dim.key] ?? null);
    const scale = scaler(raw);
    runs.forEach((r, i) => {
      values.push({ run: r.run, dim: dim.label, order, y: scale(raw[i]), raw: String(raw[i] ?? '') });
    });
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    width: 'container',
    height: 220,
    data: { values },
    layer: [
      {
        mark: { type: 'rule', opacity: 0.5 },
        encoding: { x: { field: 'dim', type: 'nominal', sort: dims.map(d => d.label), title: null } }
      },
      {
        mark: { type: 'line', point: true, tooltip: true },
        encoding: {
          x: { field: 'dim', type: 'nominal', sort: dims.map(d => d.label), title: null },
          y: { field: 'y', type: 'quantitative', axis: null, scale: { domain: [0, 1] } },
          color: { field: 'run', type: 'nominal', title: 'run' },
          detail: { field: 'run' },
          tooltip: [
            { field: 'run', type: 'nominal' },
            { field: 'dim', type: 'nominal' },
            { field: 'raw', type: 'nominal', title: 'value' }
          ]
        }
      }
    ]
  } as TopLevelSpec;
}

function scaler(raw: CellValue[]): (v: CellValue) => number | null {
  if (numeric(raw)) {
    const nums = raw.filter(v => v !== null).map(Number);
    const lo = Math.min(...nums);
    const hi = Math.max(...nums);
    return v => (v === null ? null : hi === lo ? 0.5 : (Number(v) - lo) / (hi - lo));
  }
  const levels = [...new Set(raw.filter(v => v !== null).map(String))].sort();
  return v =>
    v === null ? null : levels.length < 2 ? 0.5 : levels.indexOf(String(v)) / (levels.length - 1);
}

/** A chart's frame: a title and the node vega draws into. */
export function chartBox(cls: string, title: string): { box: HTMLElement; target: HTMLElement } {
  const target = h('div', { class: 'nbtrack-cmp-vega' });
  const box = h('figure', { class: `nbtrack-cmp-chart ${cls}` }, h('figcaption', {}, title), target);
  return { box, target };
}
