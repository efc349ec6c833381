// Devices: the list with search and filters, and one device's page (metadata, history, messages, files, twin, commands).
import { get, post, request, subscribe } from './api.js';
import { h, clear, field, table, row, flash, age, when, json, metadataText, parsePairs, confirmDialog } from './dom.js';

const listColumns = ['Device ID', 'Client ID', 'Name', 'Organisation', 'Status', 'Last registered', 'Metadata'];
const lastSeenChoices = [['', 'any time'], ['3600', 'last hour'], ['86400', 'last 24 h'], ['604800', 'last 7 days'], ['-604800', 'not for 7 days']];

export async function devicesPage(container) {
  const search = field('Search', { type: 'search', name: 'q', placeholder: 'ID, client ID or name' });
  const org = field('Organisation', { name: 'org', placeholder: 'any' });
  const status = field('Status', { name: 'status' }, 'select');
  for (const [value, text] of [['', 'any'], ['active', 'active'], ['revoked', 'revoked']]) status.input.append(h('option', { value }, text));
  const seen = field('Last registered', { name: 'seen' }, 'select');
  for (const [value, text] of lastSeenChoices) seen.input.append(h('option', { value }, text));
  const meta = field('Metadata (key=value, ...)', { name: 'metadata', placeholder: 'e.g. site=berlin' });
  const results = h('div', { id: 'device-list', 'aria-live': 'polite' });
  const form = h('form', { class: 'panel', role: 'search' }, h('div', { class: 'fields' }, search.wrap, org.wrap, status.wrap, seen.wrap, meta.wrap));
  clear(container, h('h1', { id: 'page-title' }, 'Devices'), form, results);

  let devices = [];
  async function load() {
    const q = org.input.value.trim();
    devices = (await get(`/api/devices${q ? `?org=${encodeURIComponent(q)}` : ''}`)).items;
    render();
  }

  function render() {
    const text = search.input.value.trim().toLowerCase();
    let pairs = null;
    try { pairs = parsePairs(meta.input.value); } catch { pairs = null; }
    const window = Number(seen.input.value || 0);
    const now = Date.now();
    const shown = devices.filter((d) =>
      (!text || [d.device_id, d.client_id, d.device_name || ''].some((v) => v.toLowerCase().includes(text)))
      && (!status.input.value || d.status === status.input.value)
      && (!window || (window > 0
        ? d.last_registered_at && now - Date.parse(d.last_registered_at) <= window * 1000
        : !d.last_registered_at || now - Date.parse(d.last_registered_at) > -window * 1000))
      && (!pairs || Object.entries(pairs).every(([k, v]) => d.metadata && k in d.metadata && (typeof d.metadata[k] === 'string' ? d.metadata[k] : JSON.stringify(d.metadata[k])) === v)));
    clear(results,
      h('p', { class: 'muted' }, `${shown.length} of ${devices.length} devices`),
      table(listColumns, shown.map((d) => row(listColumns, [
        h('a', { href: `#/devices/${encodeURIComponent(d.device_id)}`, class: 'mono' }, d.device_id),
        h('span', { class: 'mono' }, d.client_id),
        d.device_name || '—', d.org_id,
        h('span', { class: `tag ${d.status === 'active' ? 'ok' : 'danger'}` }, d.status),
        d.last_registered_at ? `${age(d.last_registered_at)} ago` : '—',
        metadataText(d.metadata),
      ], { 'data-device': d.device_id }))));
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); load().catch((err) => flash(err.message, true)); });
  org.input.addEventListener('change', () => load().catch((err) => flash(err.message, true)));
  for (const input of [search.input, status.input, seen.input, meta.input]) input.addEventListener('input', render);
  const unsubscribe = [subscribe('device', () => load().catch(() => {})), subscribe('resync', () => load().catch(() => {}))];
  await load();
  return () => unsubscribe.forEach((u) => u());
}

const commandColumns = ['Command', 'Name', 'State', 'Sent', 'Finished', 'Result'];

export async function devicePage(container, id) {
  const path = `/api/devices/${encodeURIComponent(id)}`;
  const device = await get(path);
  const info = h('div', { class: 'panel' });
  const history = h('div', { class: 'panel' }, h('h2', {}, 'Registration history'));
  const twinPanel = h('div', { class: 'panel', id: 'twin' }, h('h2', {}, 'Twin'));
  const commandPanel = h('div', { class: 'panel', id: 'commands' }, h('h2', {}, 'Commands'));
  const messages = h('div', { class: 'panel' }, h('h2', {}, 'Recent messages'));
  const files = h('div', { class: 'panel' }, h('h2', {}, 'Files'));
  const outbox = h('div', { class: 'panel', id: 'outbox' }, h('h2', {}, 'Outbox'));
  const tokens = h('div', { class: 'panel', id: 'token-expiries' }, h('h2', {}, 'Token expiries'));
  const revoke = h('button', { type: 'button', class: 'danger', id: 'revoke-device', onclick: onRevoke }, 'Revoke device…');
  clear(container,
    h('p', {}, h('a', { href: '#/devices' }, '← Devices')),
    h('h1', { id: 'page-title' }, 'Device ', h('span', { class: 'mono' }, id)),
    info, tokens, h('div', { class: 'grid' }, twinPanel, commandPanel), history, messages, files, outbox);

  function renderInfo(d) {
    revoke.hidden = d.status === 'revoked';
    clear(info, h('h2', {}, 'Details'), h('dl', { class: 'kv' },
      h('dt', {}, 'Status'), h('dd', { id: 'device-status' }, h('span', { class: `tag ${d.status === 'active' ? 'ok' : 'danger'}` }, d.status)),
      h('dt', {}, 'Client ID'), h('dd', { class: 'mono' }, d.client_id),
      h('dt', {}, 'Name'), h('dd', {}, d.device_name || '—'),
      h('dt', {}, 'Organisation'), h('dd', {}, d.org_id),
      h('dt', {}, 'Token'), h('dd', { class: 'mono' }, d.provisioning_token_id || '—'),
      h('dt', {}, 'Created'), h('dd', {}, when(d.created_at)),
      h('dt', {}, 'Last registered'), h('dd', {}, when(d.last_registered_at)),
      d.revoked_at ? [h('dt', {}, 'Revoked'), h('dd', {}, when(d.revoked_at))] : null,
      h('dt', {}, 'Metadata'), h('dd', {}, json(d.metadata))),
      h('div', { class: 'actions' }, revoke));
  }

  async function onRevoke() {
    if (!await confirmDialog(`Revoke ${id}?`, [h('p', {}, 'Its tokens stop working at once and its broker connection is closed. This cannot be undone; the device must register again.')], 'Revoke', true)) return;
    try {
      const d = await post(`${path}/revoke`, {});
      renderInfo(d);
      flash(`Revoked ${id}${d.disconnect ? ` (connection: ${d.disconnect.replaceAll('_', ' ')})` : ''}.`);
    } catch (err) { flash(`Revoke failed: ${err.message}`, true); }
  }

  // --- Registration history (GET /api/devices/{id}/history, newest first, paged by `before`) and the reported outbox.
  const historyColumns = ['When', 'What', 'By', 'Operation', 'Token', 'Detail'];
  const historyKinds = {
    'operation.created': 'Provisioning requested', 'operation.approved': 'Approved', 'operation.rejected': 'Rejected',
    'operation.expired': 'Request expired', 'device.created': 'Device created', 'device.registered': 'Registered', 'device.revoked': 'Revoked',
  };
  const historyBody = h('tbody', { id: 'history-rows' });
  const olderHistory = h('button', { type: 'button', class: 'secondary', id: 'history-older', hidden: true }, 'Older entries');
  let historyCursor = null;

  function historyRow(e) {
    const what = historyKinds[e.kind] || (e.kind.startsWith('audit.') ? `Operator: ${e.kind.slice(6)}` : e.kind);
    const detail = [e.reprovision ? 're-provisioning' : null, e.detail, e.client_id ? `client ${e.client_id}` : null].filter(Boolean).join(' · ');
    return row(historyColumns, [when(e.at), h('span', { class: 'history-kind', dataset: { kind: e.kind } }, what), e.by || '—',
      e.operation_id ? h('span', { class: 'mono' }, e.operation_id) : '—', e.provisioning_token_id ? h('span', { class: 'mono' }, e.provisioning_token_id) : '—',
      detail || '—'], { 'data-history': e.id });
  }

  async function loadHistory(more = false) {
    const q = `limit=50${more && historyCursor ? `&before=${encodeURIComponent(historyCursor)}` : ''}`;
    const body = await get(`${path}/history?${q}`);
    const items = body.items || [];
    if (!more) {
      clear(historyBody);
      renderOutbox(body.outbox);
      renderTokens(body.tokens || []);
    }
    for (const e of items) historyBody.append(historyRow(e));
    historyCursor = items.length > 0 ? items[items.length - 1].id : historyCursor;
    olderHistory.hidden = items.length < 50;
    clear(history, h('h2', {}, 'Registration history'),
      historyBody.childElementCount === 0 ? h('p', { class: 'muted' }, 'Nothing recorded.')
        : h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'history-list' },
          h('caption', { class: 'muted' }, 'Provisioning, registrations and operator actions, newest first'),
          h('thead', {}, h('tr', {}, historyColumns.map((c) => h('th', { scope: 'col' }, c)))), historyBody)),
      h('div', { class: 'actions' }, olderHistory));
  }
  olderHistory.addEventListener('click', () => loadHistory(true).catch((err) => flash(err.message, true)));

  // The device's Registration Tokens in force (a refresh replaces one; each access token it mints lives minutes).
  function renderTokens(list) {
    const columns = ['Registration Token', 'Issued', 'Expires'];
    clear(tokens, h('h2', {}, 'Token expiries'), list.length === 0
      ? h('p', { class: 'muted' }, 'No Registration Token in force: the device must register again.')
      : h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'token-list' },
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, list.map((t) => row(columns, [h('span', { class: 'mono' }, t.token_id), when(t.issued_at), when(t.expires_at)]))))));
  }

  function renderOutbox(mine) {
    clear(outbox, h('h2', {}, 'Outbox'), mine ? h('dl', { class: 'kv', id: 'outbox-report' },
      h('dt', {}, 'Reported'), h('dd', {}, when(mine.reported_at)),
      h('dt', {}, 'Pending'), h('dd', { id: 'outbox-pending' }, `${mine.pending} message${mine.pending === 1 ? '' : 's'} (${mine.pending_bytes} bytes)`),
      h('dt', {}, 'Oldest'), h('dd', {}, mine.oldest_age_seconds != null ? `${Math.round(mine.oldest_age_seconds)} s when reported` : '—'),
      h('dt', {}, 'Quarantined'), h('dd', { id: 'outbox-quarantined' }, String(mine.quarantined)))
      : h('p', { class: 'muted' }, 'The device has not reported its outbox.'));
  }

  async function loadMessages() {
    const list = (await get(`/api/messages?device=${encodeURIComponent(id)}&limit=20`)).items;
    clear(messages, h('h2', {}, 'Recent messages'), list.length === 0 ? h('p', { class: 'muted' }, 'No messages yet.')
      : table(['Seq', 'Stream', 'Received', 'Payload'], list.slice(-20).reverse().map((m) => row(['Seq', 'Stream', 'Received', 'Payload'], [
        String(m.seq), m.stream, when(m.received_at),
        h('code', {}, m.payload !== undefined && m.payload !== null ? m.payload.slice(0, 200) : `(${(m.payload_base64 || '').length * 3 / 4 | 0} bytes, binary)`)]))));
  }

  async function loadFiles() {
    const list = (await get(`/api/files?device=${encodeURIComponent(id)}`)).items;
    clear(files, h('h2', {}, 'Files'), list.length === 0 ? h('p', { class: 'muted' }, 'No files.')
      : table(['Name', 'Size', 'Received', 'Download'], list.map((f) => row(['Name', 'Size', 'Received', 'Download'], [
        f.name, `${f.size} bytes`, when(f.received_at),
        h('a', { href: `/api/files/${encodeURIComponent(f.file_id)}/content`, download: f.name }, `Download ${f.name}`)]))));
  }

  // --- Twin: desired (editable, with the version it was read at) and reported.
  let twinEtag = null;
  const desiredEditor = field('Desired patch (JSON merge patch)', { name: 'desired', id: 'desired-patch', spellcheck: 'false' }, 'textarea');
  const twinView = h('div', { id: 'twin-view', 'aria-live': 'polite' });
  const twinError = h('p', { class: 'error', role: 'alert', id: 'twin-error' });
  const twinForm = h('form', {}, desiredEditor.wrap, twinError,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'save-desired' }, 'Apply patch'),
      h('button', { type: 'button', class: 'secondary', id: 'reload-twin', onclick: () => loadTwin() }, 'Reload')));
  twinForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    twinError.textContent = '';
    let patch;
    try { patch = JSON.parse(desiredEditor.input.value); } catch (err) { twinError.textContent = `Not JSON: ${err.message}`; return; }
    try {
      const headers = twinEtag ? { 'If-Match': twinEtag } : {};
      const answer = await request('PATCH', `${path}/twin/desired`, { body: patch, headers, contentType: 'application/merge-patch+json' });
      showTwin(answer.body, answer.etag);
      desiredEditor.input.value = '{}';
      flash('Desired twin updated.');
    } catch (err) {
      twinError.textContent = err.status === 412 ? 'The twin changed meanwhile: reload it and patch again.' : `Patch refused: ${err.message}`;
    }
  });
  clear(twinPanel, h('h2', {}, 'Twin'), twinView, twinForm);

  function showTwin(twin, etag) {
    twinEtag = etag;
    clear(twinView, h('div', { class: 'grid' },
      h('div', {}, h('h3', {}, `Desired (version ${twin.desired_version})`), h('div', { id: 'twin-desired' }, json(twin.desired || {}))),
      h('div', {}, h('h3', {}, `Reported (version ${twin.reported_version})`), h('div', { id: 'twin-reported' }, json(twin.reported || {})))));
  }

  // An operator's Reload clears a refused patch's message; a live event's reload keeps it, or a 412 shown a moment
  // earlier would vanish when the other change's event arrives after it.
  async function loadTwin({ keepError = false } = {}) {
    const answer = await request('GET', `${path}/twin`);
    showTwin(answer.body, answer.etag);
    if (!keepError) twinError.textContent = '';
  }

  // --- Commands: send one; the list follows `command` events.
  const commands = new Map();
  // A finished command never goes back: the POST's answer or a list read can arrive after the event of the result.
  const isFinal = (c) => c && !['queued', 'sent'].includes(c.state);
  const remember = (c) => {
    const known = commands.get(c.command_id);
    if (isFinal(known) && !isFinal(c)) return;
    commands.set(c.command_id, { ...known, ...c });
  };
  const cmdName = field('Name', { name: 'command', id: 'command-name', required: true });
  const cmdPayload = field('Payload (JSON)', { name: 'payload', id: 'command-payload', spellcheck: 'false' }, 'textarea');
  const cmdTtl = field('TTL', { name: 'ttl', id: 'command-ttl', value: '1h' });
  const cmdBody = h('tbody');
  cmdTtl.wrap.className = 'narrow';
  const cmdForm = h('form', {}, h('div', { class: 'fields' }, cmdName.wrap, cmdTtl.wrap), cmdPayload.wrap,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'send-command' }, 'Send command')));
  cmdForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    let payload = null;
    if (cmdPayload.input.value.trim()) {
      try { payload = JSON.parse(cmdPayload.input.value); } catch (err) { flash(`Payload is not JSON: ${err.message}`, true); return; }
    }
    try {
      const sent = await post(`${path}/commands`, { name: cmdName.input.value.trim(), payload, ttl: cmdTtl.input.value.trim() || undefined });
      remember(sent);
      renderCommands();
      flash(`Command ${sent.name} queued.`);
    } catch (err) { flash(`Send failed: ${err.message}`, true); }
  });
  clear(commandPanel, h('h2', {}, 'Commands'), cmdForm,
    h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'command-list' },
      h('thead', {}, h('tr', {}, commandColumns.map((c) => h('th', { scope: 'col' }, c)))), cmdBody)));

  function renderCommands() {
    const list = [...commands.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
    clear(cmdBody, list.map((c) => row(commandColumns, [
      h('span', { class: 'mono' }, c.command_id), c.name,
      h('span', { class: 'tag command-state', dataset: { state: c.state } }, c.state),
      when(c.sent_at), when(c.finished_at),
      c.result !== undefined && c.result !== null ? h('code', { class: 'command-result' }, JSON.stringify(c.result)) : (c.message || '—'),
    ], { 'data-command': c.command_id })));
  }

  async function loadCommands() {
    const list = (await get(`${path}/commands?limit=50`)).items;
    const shown = new Set(list.map((c) => c.command_id));
    for (const known of [...commands.keys()]) if (!shown.has(known)) commands.delete(known);
    for (const c of list) remember(c);
    renderCommands();
  }

  const refresh = () => Promise.all([loadTwin({ keepError: true }), loadCommands(), loadHistory()]).catch(() => {});
  const unsubscribe = [
    subscribe('command', (e) => { if (e.command && e.command.device_id === id) { remember(e.command); renderCommands(); } }),
    subscribe('twin', (e) => { if (e.device_id === id) loadTwin({ keepError: true }).catch(() => {}); }),
    subscribe('device', (e) => { if (e.device && e.device.device_id === id) { renderInfo(e.device); loadHistory().catch(() => {}); } }),
    subscribe('resync', refresh),
    subscribe('poll', refresh),
  ];
  renderInfo(device);
  await Promise.all([loadTwin(), loadCommands(), loadHistory(), loadMessages(), loadFiles()].map((p) => p.catch((err) => flash(err.message, true))));
  return () => unsubscribe.forEach((u) => u());
}
