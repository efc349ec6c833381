// Approvals: pending provisioning operations, live; approve / reject one; bulk decisions by filter.
import { get, post, subscribe, liveState } from './api.js';
import { h, clear, field, table, row, flash, age, metadataText, parsePairs, confirmDialog } from './dom.js';

const columns = ['Client ID', 'Desired ID', 'Organisation', 'Name', 'Metadata', 'Age', 'Token', 'Kind', 'Actions'];

export function setPendingBadge(count) {
  document.getElementById('pending-count').textContent = count > 0 ? String(count) : '';
}

export async function approvalsPage(container) {
  const operations = new Map();
  const deviceStatus = new Map();
  const tbody = h('tbody');
  const live = h('p', { class: 'muted', id: 'live-state' });
  const summary = h('p', { id: 'pending-summary', 'aria-live': 'polite' });

  const org = field('Organisation', { name: 'org', placeholder: 'any' });
  const token = field('Token ID', { name: 'token', placeholder: 'any' });
  const meta = field('Metadata (key=value, ...)', { name: 'metadata', placeholder: 'e.g. site=berlin' });
  const bulkForm = h('form', { class: 'panel', id: 'bulk-form', 'aria-labelledby': 'bulk-title' },
    h('h2', { id: 'bulk-title' }, 'Decide everything matching'),
    h('div', { class: 'fields' }, org.wrap, token.wrap, meta.wrap,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'approve', id: 'bulk-approve', onclick: () => bulk('approve') }, 'Approve matching…'),
        h('button', { type: 'button', class: 'danger', id: 'bulk-reject', onclick: () => bulk('reject') }, 'Reject matching…'))));

  clear(container,
    h('h1', { id: 'page-title' }, 'Approvals'),
    live, bulkForm,
    h('h2', {}, 'Pending'), summary,
    h('div', { class: 'table-wrap' }, h('table', { class: 'cards', id: 'pending' },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))), tbody)));

  async function kindOf(op) {
    if (!op.reprovision_of) return h('span', { class: 'tag ok' }, 'new');
    if (!deviceStatus.has(op.reprovision_of)) {
      try { deviceStatus.set(op.reprovision_of, (await get(`/api/devices/${encodeURIComponent(op.reprovision_of)}`)).status); } catch { deviceStatus.set(op.reprovision_of, 'unknown'); }
    }
    const revoked = deviceStatus.get(op.reprovision_of) === 'revoked';
    return h('span', { class: `tag ${revoked ? 'danger' : 'warn'}` }, revoked ? `re-provisions revoked ${op.reprovision_of}` : `re-provisions ${op.reprovision_of}`);
  }

  function render() {
    const list = [...operations.values()].sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
    clear(tbody, list.length === 0
      ? h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'Nothing is waiting for approval.'))
      : list.map((op) => {
        const kind = h('span');
        kindOf(op).then((node) => clear(kind, node));
        return row(columns, [
          h('span', { class: 'mono' }, op.client_id),
          op.desired_device_id ? h('span', { class: 'mono' }, op.desired_device_id) : h('span', { class: 'muted' }, '—'),
          op.org_id,
          op.device_name || h('span', { class: 'muted' }, '—'),
          metadataText(op.metadata),
          h('span', { class: 'age', dataset: { since: op.created_at } }, age(op.created_at)),
          h('span', { class: 'mono' }, op.provisioning_token_id),
          kind,
          h('div', { class: 'actions' },
            h('button', { type: 'button', class: 'approve', 'aria-label': `Approve ${op.client_id}`, onclick: () => approve(op) }, 'Approve'),
            h('button', { type: 'button', class: 'danger', 'aria-label': `Reject ${op.client_id}`, onclick: () => reject(op) }, 'Reject')),
        ], { 'data-operation': op.operation_id, 'data-client': op.client_id });
      }));
    summary.textContent = `${list.length} pending`;
    setPendingBadge(list.length);
  }

  // Live events that arrive while a load's request is out are replayed onto its answer, in order: the answer may
  // predate them, and clearing the list for it must not lose an operation that was announced meanwhile.
  let arrivedDuringLoad = null;

  function apply(op) {
    if (op.status === 'pending') operations.set(op.operation_id, op); else operations.delete(op.operation_id);
  }

  async function load() {
    const arrived = [];
    arrivedDuringLoad = arrived;
    try {
      const list = await get('/api/provisioning-operations?status=pending');
      operations.clear();
      for (const op of list.items) operations.set(op.operation_id, op);
      for (const op of arrived) apply(op);
    } finally {
      if (arrivedDuringLoad === arrived) arrivedDuringLoad = null;
    }
    render();
  }

  async function approve(op) {
    try {
      await post(`/api/provisioning-operations/${encodeURIComponent(op.operation_id)}/approve`, {});
      operations.delete(op.operation_id);
      render();
      flash(`Approved ${op.client_id}.`);
    } catch (err) { flash(`Approve failed: ${err.message}`, true); }
  }

  async function reject(op) {
    const reason = field('Reason (the device is told)', { name: 'reason', id: 'reject-reason', maxlength: 256 }, 'textarea');
    if (!await confirmDialog(`Reject ${op.client_id}?`, [reason.wrap], 'Reject', true)) return;
    try {
      await post(`/api/provisioning-operations/${encodeURIComponent(op.operation_id)}/reject`, { reason: reason.input.value.trim() || null });
      operations.delete(op.operation_id);
      render();
      flash(`Rejected ${op.client_id}.`);
    } catch (err) { flash(`Reject failed: ${err.message}`, true); }
  }

  async function bulk(action) {
    let filter;
    try {
      filter = { org_id: org.input.value.trim() || null, provisioning_token_id: token.input.value.trim() || null, metadata: parsePairs(meta.input.value) };
    } catch (err) { flash(`Metadata filter: ${err.message}`, true); meta.input.focus(); return; }
    for (const k of Object.keys(filter)) if (filter[k] === null) delete filter[k];
    try {
      const dry = await post('/api/provisioning-operations/bulk', { action, filter, dry_run: true });
      if (dry.matched === 0) { flash('Nothing pending matches this filter.', true); return; }
      const reason = field('Reason (the devices are told)', { name: 'reason', id: 'bulk-reason', maxlength: 256 }, 'textarea');
      const verb = action === 'approve' ? 'Approve' : 'Reject';
      const body = [h('p', { id: 'bulk-count' }, `This will ${action} ${dry.matched} pending operation${dry.matched === 1 ? '' : 's'}.`)];
      if (action === 'reject') body.push(reason.wrap);
      if (!await confirmDialog(`${verb} ${dry.matched}?`, body, `${verb} ${dry.matched}`, action === 'reject')) return;
      const done = await post('/api/provisioning-operations/bulk', { action, filter, reason: action === 'reject' ? reason.input.value.trim() || null : null });
      flash(`${verb}d ${done.decided} of ${done.matched}.`);
      await load();
    } catch (err) { flash(`Bulk ${action} failed: ${err.message}`, true); }
  }

  const tick = setInterval(() => {
    for (const cell of tbody.querySelectorAll('.age')) cell.textContent = age(cell.dataset.since);
    live.textContent = liveState.mode === 'live' ? 'Live: new requests appear here as they arrive.'
      : liveState.mode === 'polling' ? 'Refreshed every 3 s.' : 'Connecting to live updates…';
  }, 1000);
  const unsubscribe = [
    subscribe('operation', (e) => {
      const op = e.operation;
      if (!op) return;
      if (arrivedDuringLoad) arrivedDuringLoad.push(op);
      apply(op);
      render();
    }),
    subscribe('resync', () => load().catch(() => {})),
    subscribe('poll', () => load().catch(() => {})),
  ];
  await load();
  return () => { clearInterval(tick); unsubscribe.forEach((u) => u()); };
}
