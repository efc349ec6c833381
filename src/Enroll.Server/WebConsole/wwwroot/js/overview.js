// Fleet overview: devices by status, per-minute series over the last hour (inline SVG), outboxes, recent refusals.
import { get, subscribe } from './api.js';
import { h, clear, table, row, when } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/** A bar chart of 60 per-minute counts, with its total and peak as text for screen readers. */
export function minuteChart(title, series) {
  const counts = series?.counts || [];
  const max = Math.max(1, ...counts);
  const total = counts.reduce((a, b) => a + b, 0);
  const width = 600, height = 90, bar = width / Math.max(60, counts.length);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `${title}: ${total} in the last hour, at most ${max === 1 && total === 0 ? 0 : max} a minute` },
    svg('line', { class: 'axis', x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }),
    ...counts.map((c, i) => {
      const barHeight = c === 0 ? 0 : Math.max(2, (c / max) * (height - 6));
      return svg('rect', { class: 'bar', x: i * bar + 1, y: height - barHeight, width: Math.max(1, bar - 2), height: barHeight },
        svg('title', {}, `${c}`));
    }));
  return h('div', { class: 'panel chart' }, h('h2', {}, title, ' ', h('span', { class: 'muted' }, `(${total} in the last hour)`)), chart,
    h('p', { class: 'muted' }, 'Per minute, last 60 minutes; right is now.'));
}

export async function overviewPage(container) {
  const body = h('div', { id: 'overview' });
  clear(container, h('h1', { id: 'page-title' }, 'Fleet overview'), body);

  async function load() {
    const o = await get('/api/overview');
    const statuses = Object.entries(o.devices_by_status || {});
    clear(body,
      h('div', { class: 'panel stats', 'aria-live': 'polite' },
        statuses.map(([status, count]) => h('div', { 'data-status': status }, h('span', {}, `${status} devices`), h('strong', { class: 'stat' }, String(count)))),
        h('div', {}, h('span', {}, 'pending operations'), h('strong', { class: 'stat' }, String(o.pending_operations ?? 0)))),
      h('div', { class: 'grid' },
        minuteChart('Registrations', o.registrations), minuteChart('Approvals', o.approvals), minuteChart('Messages', o.messages)),
      h('h2', {}, 'Outboxes reported by devices'),
      (o.outboxes || []).length === 0 ? h('p', { class: 'muted' }, 'No device has reported an outbox.')
        : table(['Device', 'Pending', 'Bytes', 'Oldest', 'Quarantined', 'Reported'], o.outboxes.map((b) => row(['Device', 'Pending', 'Bytes', 'Oldest', 'Quarantined', 'Reported'], [
          h('a', { href: `#/devices/${encodeURIComponent(b.device_id)}`, class: 'mono' }, b.device_id), String(b.pending), String(b.pending_bytes),
          b.oldest_age_seconds != null ? `${Math.round(b.oldest_age_seconds)} s` : '—', String(b.quarantined), when(b.reported_at)]))),
      h('h2', {}, 'Recent refusals'),
      (o.refusals || []).length === 0 ? h('p', { class: 'muted' }, 'None.')
        : table(['When', 'Kind', 'Source', 'Reason', 'Count'], o.refusals.map((r) => row(['When', 'Kind', 'Source', 'Reason', 'Count'], [
          when(r.at), r.kind, h('span', { class: 'mono' }, r.source || '—'), r.reason || '—', String(r.count)]))));
  }

  const timer = setInterval(() => load().catch(() => {}), 15000);
  const unsubscribe = subscribe('resync', () => load().catch(() => {}));
  try { await load(); } catch (err) {
    clear(body, h('p', { class: err.status === 404 ? 'muted' : 'error' }, err.status === 404 ? 'This server has no overview endpoint.' : err.message));
  }
  return () => { clearInterval(timer); unsubscribe(); };
}
