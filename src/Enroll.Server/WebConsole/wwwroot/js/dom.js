// Small DOM helpers: elements are built with text nodes only (never innerHTML), so server data cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldCounter = 0;

/** A labelled input: returns { wrap, input }. */
export function field(labelText, attrs = {}, tag = 'input') {
  const id = attrs.id || `f${++fieldCounter}`;
  const input = h(tag, { ...attrs, id });
  return { wrap: h('div', {}, h('label', { for: id }, labelText), input), input };
}

export function checkbox(labelText, attrs = {}) {
  const id = attrs.id || `f${++fieldCounter}`;
  const input = h('input', { type: 'checkbox', ...attrs, id });
  return { wrap: h('div', { class: 'check' }, input, ' ', h('label', { for: id }, labelText)), input };
}

/** A table whose cells carry their column name (stacked as cards on a phone). */
export function table(columns, rows, caption) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'cards' },
      caption ? h('caption', { class: 'muted' }, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows)));
}

export function row(columns, cells, attrs = {}) {
  return h('tr', attrs, cells.map((cell, i) => h('td', { 'data-label': columns[i] }, cell)));
}

export function flash(message, isError = false) {
  const box = document.getElementById('flash');
  clear(box, h('p', { class: isError ? 'error' : '' }, message));
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => box.replaceChildren(), isError ? 10000 : 5000);
}

/** "3 s", "5 min", "2 h 10 min", "3 d": how long ago (or how long until) an instant. */
export function age(iso, now = Date.now()) {
  if (!iso) return '—';
  let s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d`;
}

export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

export function json(value) {
  if (value === undefined || value === null) return h('span', { class: 'muted' }, '—');
  return h('pre', {}, JSON.stringify(value, null, 2));
}

export function metadataText(metadata) {
  if (!metadata || Object.keys(metadata).length === 0) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'mono' }, Object.entries(metadata).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', '));
}

/** Parses "k=v, k2=v2" into an object (null when empty); throws on a part without "=". */
export function parsePairs(text) {
  const pairs = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf('=');
    if (at <= 0) throw new Error(`"${part}" is not key=value`);
    pairs[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return Object.keys(pairs).length ? pairs : null;
}

/**
 * A modal dialog (the page's one <dialog>): title, body nodes, the OK label; resolves true when confirmed.
 * The first input (or OK) gets focus; Escape and Cancel resolve false.
 */
export function confirmDialog(title, body, okLabel = 'OK', danger = false) {
  const dialog = document.getElementById('dialog');
  const ok = document.getElementById('dialog-ok');
  clear(document.getElementById('dialog-title'), title);
  clear(document.getElementById('dialog-body'), body);
  ok.textContent = okLabel;
  ok.className = danger ? 'danger' : '';
  return new Promise((resolve) => {
    const cancel = document.getElementById('dialog-cancel');
    const done = (value) => {
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onCancel = () => done(false);
    const onClose = () => done(dialog.returnValue === 'ok');
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.returnValue = '';
    dialog.showModal();
    (dialog.querySelector('#dialog-body input, #dialog-body textarea') || ok).focus();
  });
}
