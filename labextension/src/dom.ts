/** A tiny element builder: the panel is plain DOM, no framework. */

type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | null | undefined> = {},
  ...children: Array<Child | Child[]>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (key === 'class') {
      el.className = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A number as a person reads it: 4 significant digits, whole numbers unchanged. */
export function fmt(value: unknown): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      return String(value);
    }
    return Number.isFinite(value) ? String(Number(value.toPrecision(4))) : String(value);
  }
  if (typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

/** A value for a narrow column: long hashes (git, DVC, sha256) cut to 10 characters. */
export function short(value: unknown): string {
  const text = fmt(value);
  return /^[0-9a-f]{16,}$/i.test(text) ? text.slice(0, 10) : text;
}

/** A signed difference: +0.0123, -2. */
export function fmtDelta(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '';
  }
  return (value > 0 ? '+' : '') + fmt(value);
}

/** Whether a cell shows a number (or a signed difference): it never wraps mid-number. */
function isNumber(cell: Child): boolean {
  return (typeof cell === 'string' && /^[+-−]?[\d.,e+-]+$/i.test(cell.trim())) || typeof cell === 'number';
}

/** A two- or more-column table; `rowAttrs` gives each row's attributes. */
export function table(
  cls: string,
  head: string[],
  rows: Array<{ cells: Child[]; attrs?: Record<string, string> }>
): HTMLTableElement {
  return h(
    'table',
    { class: `nbtrack-table ${cls}` },
    h('thead', {}, h('tr', {}, head.map(title => h('th', {}, title)))),
    h(
      'tbody',
      {},
      rows.map(row =>
        h(
          'tr',
          row.attrs ?? {},
          row.cells.map(cell =>
            h('td', { class: isNumber(cell) ? 'nbtrack-num' : null, title: typeof cell === 'string' ? cell : null }, cell)
          )
        )
      )
    )
  );
}

/** A titled section; `empty` is shown instead of the body when there is nothing. */
export function section(
  cls: string,
  title: string,
  body: Node | null,
  empty = 'no differences'
): HTMLElement {
  return h(
    'section',
    { class: `nbtrack-section ${cls}` },
    h('h3', {}, title),
    body ?? h('p', { class: 'nbtrack-none' }, empty)
  );
}
