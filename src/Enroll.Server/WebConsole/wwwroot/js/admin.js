// The audit log, and operator accounts (the admin adds and removes them; a new key is shown once).
import { get, post, del, currentSession } from './api.js';
import { h, clear, field, table, row, flash, when, confirmDialog } from './dom.js';

const auditColumns = ['When', 'Operator', 'Action', 'Target', 'From', 'Status', 'Detail'];

export async function auditPage(container) {
  const who = field('Operator', { name: 'operator', placeholder: 'any' });
  const action = field('Action', { name: 'action', placeholder: 'e.g. operation.approve' });
  const list = h('div', { id: 'audit-list' });
  const form = h('form', { class: 'panel', role: 'search' }, h('div', { class: 'fields' }, who.wrap, action.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Filter'))));
  clear(container, h('h1', { id: 'page-title' }, 'Audit log'), form, list);
  async function load() {
    const q = new URLSearchParams({ limit: '200' });
    if (who.input.value.trim()) q.set('operator', who.input.value.trim());
    if (action.input.value.trim()) q.set('action', action.input.value.trim());
    const entries = (await get(`/api/audit?${q}`)).items;
    clear(list, entries.length === 0 ? h('p', { class: 'muted' }, 'Nothing recorded.') : table(auditColumns, entries.map((e) => row(auditColumns, [
      when(e.at), e.operator, h('code', {}, e.action), h('span', { class: 'mono' }, e.target || '—'), e.remote || '—', String(e.status), e.detail || '—']))));
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); load().catch((err) => flash(err.message, true)); });
  try { await load(); } catch (err) { clear(list, h('p', { class: 'error' }, err.status === 404 ? 'This server keeps no audit log.' : err.message)); }
}

export async function operatorsPage(container) {
  const isAdmin = currentSession()?.is_admin;
  const name = field('Name', { name: 'name', id: 'operator-new-name', required: true, pattern: '[a-z][a-z0-9._\\-]{1,63}', title: 'lowercase letters, digits, . _ -; 2 to 64 characters' });
  const keyBox = h('div', { id: 'operator-key', 'aria-live': 'polite' });
  const form = h('form', { class: 'panel', id: 'operator-form' }, h('h2', {}, 'Add an operator'), h('div', { class: 'fields' }, name.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add operator'))), keyBox);
  const list = h('div', { id: 'operator-list' });
  clear(container, h('h1', { id: 'page-title' }, 'Operators'), isAdmin ? form : h('p', { class: 'muted' }, 'Only the admin adds and removes operators.'), list);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const created = await post('/api/operators', { name: name.input.value.trim() });
      const key = h('code', { id: 'operator-key-value' }, created.key);
      const copy = h('button', { type: 'button', class: 'secondary', onclick: () => navigator.clipboard?.writeText(created.key).then(() => { copy.textContent = 'Copied'; }) }, 'Copy');
      clear(keyBox, h('p', {}, h('strong', {}, `${created.operator.name} added. `), 'Their key is shown only now.'), h('div', { class: 'secret' }, key, copy));
      name.input.value = '';
      await load();
    } catch (err) { flash(`Add failed: ${err.message}`, true); }
  });

  async function remove(o) {
    if (!await confirmDialog(`Remove ${o.name}?`, [h('p', {}, 'Their key and sessions stop working at once.')], 'Remove', true)) return;
    try { await del(`/api/operators/${encodeURIComponent(o.name)}`); flash(`Removed ${o.name}.`); await load(); } catch (err) { flash(`Remove failed: ${err.message}`, true); }
  }

  async function load() {
    const operators = (await get('/api/operators')).items;
    const cols = ['Name', 'Created', 'By', 'Removed', 'Actions'];
    clear(list, operators.length === 0 ? h('p', { class: 'muted' }, 'No operators yet: only the admin key signs in.') : table(cols, operators.map((o) => row(cols, [
      o.name, when(o.created_at), o.created_by || '—', o.removed_at ? when(o.removed_at) : '—',
      isAdmin && !o.removed_at ? h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${o.name}`, onclick: () => remove(o) }, 'Remove') : '—']))));
  }
  try { await load(); } catch (err) { clear(list, h('p', { class: 'error' }, err.status === 404 ? 'This server has no operator accounts.' : err.message)); }
}
