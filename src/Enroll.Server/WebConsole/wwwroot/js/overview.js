// Fleet overview: devices by status, per-minute series over the last hour (inline SVG), outboxes, recent refusals.
import { get, subscribe } from './api.js';
import { h, clear, table, row, when } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const REFRESH_MS = 15000;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

function clock(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * A bar chart of 60 per-minute counts (oldest left, the current minute right), drawn as inline SVG. Its text
 * equivalent: the SVG's aria-label (total and peak), and a table of the minutes that had any, under a disclosure.
 */
export function minuteChart(title, series) {
  const counts = series?.counts || [];
  const start = series?.start ? new Date(series.start) : new Date(Date.now() - 59 * 60000);
  const peak = Math.max(0, ...counts);
  const scale = Math.max(1, peak);
  const total = counts.reduce((a, b) => a + b, 0);
  const width = 600, height = 90, bar = width / Math.max(60, counts.length);
  const slug = title.toLowerCase().replace(/[^a-z]+/g, '-');
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `${title}: ${total} in the last hour, at most ${peak} in one minute` },
    svg('line', { class: 'axis', x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }),
    ...counts.map((c, i) => {
      const barHeight = c === 0 ? 0 : Math.max(2, (c / scale) * (height - 6));
      const at = new Date(start.getTime() + i * 60000);
      return svg('rect', { class: 'bar', x: i * bar + 1, y: height - barHeight, width: Math.max(1, bar - 2), height: barHeight },
        svg('title', {}, `${clock(at)}: ${c}`));
    }));
  const busy = counts.map((c, i) => [i, c]).filter(([, c]) => c > 0);
  return h('section', { class: 'panel chart', 'aria-labelledby': `chart-${slug}`, 'data-chart': slug },
    h('h2', { id: `chart-${slug}` }, title, ' ', h('span', { class: 'muted', 'data-total': '' }, `${total} in the last hour`)),
    chart,
    h('div', { class: 'chart-axis muted', 'aria-hidden': 'true' }, h('span', {}, clock(start)), h('span', {}, `peak ${peak}/min`), h('span', {}, 'now')),
    h('details', {}, h('summary', {}, `${title} by minute (table)`),
      busy.length === 0 ? h('p', { class: 'muted' }, 'None in the last hour.')
        : table(['Minute', 'Count'], busy.map(([i, c]) => row(['Minute', 'Count'], [clock(new Date(start.getTime() + i * 60000)), String(c)]))),
    ));
}

function statusCards(o) {
  const statuses = Object.entries(o.devices_by_status || {}).sort(([a], [b]) => a.localeCompare(b));
  const devices = statuses.reduce((sum, [, n]) => sum + n, 0);
  const card = (label, value, attrs = {}) => h('div', attrs, h('span', {}, label), h('strong', { class: 'stat' }, String(value)));
  return h('div', { class: 'panel stats', role: 'group', 'aria-label': 'Fleet counts' },
    card('devices', devices, { id: 'overview-devices' }),
    statuses.map(([status, count]) => card(`${status}`, count, { 'data-status': status })),
    card('pending operations', o.pending_operations ?? 0, { id: 'overview-pending' }));
}

const OUTBOX_COLUMNS = ['Device', 'Pending', 'Bytes', 'Oldest', 'Quarantined', 'Reported'];
const REFUSAL_COLUMNS = ['Last', 'Kind', 'Source', 'Reason', 'Count'];

function outboxTable(outboxes) {
  if (outboxes.length === 0) return h('p', { class: 'muted' }, 'No device has reported an outbox.');
  return table(OUTBOX_COLUMNS, outboxes.map((b) => row(OUTBOX_COLUMNS, [
    h('a', { href: `#/devices/${encodeURIComponent(b.device_id)}`, class: 'mono' }, b.device_id), String(b.pending), String(b.pending_bytes),
    b.oldest_age_seconds != null ? `${Math.round(b.oldest_age_seconds)} s` : '—', String(b.quarantined), when(b.reported_at)])),
  'The deepest outboxes devices reported, deepest first.');
}

function refusalTable(refusals) {
  if (refusals.length === 0) return h('p', { class: 'muted' }, 'None.');
  return table(REFUSAL_COLUMNS, refusals.map((r) => row(REFUSAL_COLUMNS, [
    when(r.at), h('span', { class: `kind kind-${r.kind}` }, r.kind.replace(/_/g, ' ')), h('span', { class: 'mono' }, r.source || '—'), r.reason || '—',
    h('strong', {}, String(r.count))], { 'data-kind': r.kind })),
  'Refusals of one kind and source within a minute are one row with their count; newest first.');
}

export async function overviewPage(container) {
  const body = h('div', { id: 'overview', 'aria-busy': 'true' });
  const updated = h('p', { class: 'muted', id: 'overview-updated', 'aria-live': 'polite' });
  clear(container, h('h1', { id: 'page-title' }, 'Fleet overview'), updated, body);

  let loading = null;
  async function load() {
    const o = await get('/api/overview');
    clear(body,
      statusCards(o),
      h('div', { class: 'grid charts' },
        minuteChart('Registrations', o.registrations), minuteChart('Approvals', o.approvals), minuteChart('Messages', o.messages)),
      h('section', { class: 'panel', 'aria-labelledby': 'overview-outboxes' }, h('h2', { id: 'overview-outboxes' }, 'Outboxes reported by devices'), outboxTable(o.outboxes || [])),
      h('section', { class: 'panel', 'aria-labelledby': 'overview-refusals' }, h('h2', { id: 'overview-refusals' }, 'Recent refusals'), refusalTable(o.refusals || [])));
    body.setAttribute('aria-busy', 'false');
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s and on live events.`;
  }

  function refresh() {
    // One load at a time: a burst of events while one runs asks for one more after it.
    if (loading) { loading.again = true; return; }
    loading = { again: false };
    load().catch((err) => { updated.textContent = `Refresh failed: ${err.message}`; }).finally(() => {
      const again = loading.again;
      loading = null;
      if (again) refresh();
    });
  }

  const timer = setInterval(refresh, REFRESH_MS);
  const unsubscribes = ['resync', 'device', 'operation'].map((kind) => subscribe(kind, refresh));
  try { await load(); } catch (err) {
    body.setAttribute('aria-busy', 'false');
    clear(body, h('p', { class: err.status === 404 ? 'muted' : 'error' }, err.status === 404 ? 'This server has no overview endpoint.' : err.message));
  }
  return () => { clearInterval(timer); unsubscribes.forEach((u) => u()); };
}
