// Provisioning tokens: create one (its secret is shown once, with a Copy button), the list with usage, revoke.
import { get, post } from './api.js';
import { h, clear, field, checkbox, table, row, flash, when, confirmDialog } from './dom.js';

const columns = ['Token ID', 'Organisation', 'Description', 'Uses', 'Auto-approve', 'Status', 'Expires', 'Actions'];

export async function tokensPage(container) {
  const org = field('Organisation', { name: 'org', id: 'token-org', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._-]*' });
  const expires = field('Expires (optional)', { name: 'expires', id: 'token-expires', type: 'datetime-local' });
  const maxUses = field('Max uses (optional)', { name: 'max_uses', id: 'token-max-uses', type: 'number', min: 1, step: 1 });
  const description = field('Description (optional)', { name: 'description', id: 'token-description', maxlength: 512 });
  const auto = checkbox('Approve registrations automatically', { name: 'auto_approve', id: 'token-auto-approve' });
  const secretBox = h('div', { id: 'token-secret', 'aria-live': 'polite' });
  const form = h('form', { class: 'panel', id: 'token-form', 'aria-labelledby': 'create-title' },
    h('h2', { id: 'create-title' }, 'Create a token'),
    h('div', { class: 'fields' }, org.wrap, expires.wrap, maxUses.wrap, description.wrap),
    auto.wrap, h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'create-token' }, 'Create token')), secretBox);
  const list = h('div', { id: 'token-list' });
  clear(container, h('h1', { id: 'page-title' }, 'Provisioning tokens'), form, h('h2', {}, 'Tokens'), list);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { org_id: org.input.value.trim(), auto_approve: auto.input.checked };
    if (expires.input.value) body.expires_at = new Date(expires.input.value).toISOString().replace(/\.\d{3}Z$/, 'Z');
    if (maxUses.input.value) body.max_uses = Number(maxUses.input.value);
    if (description.input.value.trim()) body.description = description.input.value.trim();
    try {
      const created = await post('/api/tokens', body);
      const secret = h('code', { id: 'token-secret-value' }, created.token);
      const copy = h('button', { type: 'button', class: 'secondary', id: 'copy-secret' }, 'Copy');
      copy.addEventListener('click', async () => {
        try { await navigator.clipboard.writeText(created.token); copy.textContent = 'Copied'; } catch {
          const range = document.createRange(); range.selectNodeContents(secret);
          getSelection().removeAllRanges(); getSelection().addRange(range); copy.textContent = 'Selected: press Ctrl+C';
        }
      });
      clear(secretBox, h('p', {}, h('strong', {}, `Token ${created.id} created. `), 'Its secret is shown only now: give it to the devices.'),
        h('div', { class: 'secret' }, secret, copy));
      copy.focus();
      await load();
    } catch (err) { flash(`Create failed: ${err.message}`, true); }
  });

  async function revoke(t) {
    if (!await confirmDialog(`Revoke token ${t.id}?`, [h('p', {}, 'Devices can no longer register with it; devices already registered keep working.')], 'Revoke', true)) return;
    try { await post(`/api/tokens/${encodeURIComponent(t.id)}/revoke`, {}); flash(`Revoked ${t.id}.`); await load(); } catch (err) { flash(`Revoke failed: ${err.message}`, true); }
  }

  async function load() {
    const tokens = (await get('/api/tokens')).items.sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
    clear(list, tokens.length === 0 ? h('p', { class: 'muted' }, 'No tokens yet.') : table(columns, tokens.map((t) => row(columns, [
      h('span', { class: 'mono' }, t.id), t.org_id, t.description || '—',
      t.max_uses ? `${t.uses} of ${t.max_uses}` : String(t.uses),
      t.auto_approve ? 'yes' : 'no',
      h('span', { class: `tag ${t.status === 'active' ? 'ok' : 'danger'}` }, t.status),
      when(t.expires_at),
      t.status === 'active' ? h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${t.id}`, onclick: () => revoke(t) }, 'Revoke') : '—',
    ], { 'data-token': t.id }))));
  }
  await load();
}
