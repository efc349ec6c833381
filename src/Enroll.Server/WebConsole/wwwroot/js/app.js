// The console's shell: sign-in, the header, and hash routes (#/approvals, #/devices/ID, ...) to the pages.
import { signIn, resumeSession, signOut, onSessionExpired, startEvents, stopEvents, currentSession, get, subscribe } from './api.js';
import { h, clear, field, flash } from './dom.js';
import { approvalsPage, setPendingBadge } from './approvals.js';
import { devicesPage, devicePage } from './devices.js';
import { tokensPage } from './tokens.js';
import { overviewPage } from './overview.js';
import { auditPage, operatorsPage } from './admin.js';

const main = document.getElementById('main');
const top = document.getElementById('top');
let leavePage = null;

const routes = [
  [/^\/approvals$/, () => approvalsPage, 'approvals', 'Approvals'],
  [/^\/devices$/, () => devicesPage, 'devices', 'Devices'],
  [/^\/devices\/([^/]+)$/, () => devicePage, 'devices', 'Device'],
  [/^\/tokens$/, () => tokensPage, 'tokens', 'Provisioning tokens'],
  [/^\/overview$/, () => overviewPage, 'overview', 'Fleet overview'],
  [/^\/audit$/, () => auditPage, 'audit', 'Audit log'],
  [/^\/operators$/, () => operatorsPage, 'operators', 'Operators'],
];

function showSignIn(message) {
  stopEvents();
  if (leavePage) { leavePage(); leavePage = null; }
  top.hidden = true;
  document.title = 'Sign in · Enroll console';
  const key = field('Key', { type: 'password', name: 'key', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const error = h('p', { id: 'signin-error', class: 'error', role: 'alert', 'aria-live': 'assertive' }, message || '');
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'panel', id: 'signin-form', 'aria-describedby': 'signin-help' },
    key.wrap,
    h('p', { id: 'signin-help', class: 'muted' }, 'The admin key (the server\'s ', h('code', {}, 'admin.key'), ' file) or the key ', h('code', {}, 'enroll operators add'), ' printed.'),
    error, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = '';
    try {
      await signIn(key.input.value.trim());
      key.input.value = '';
      enter();
    } catch (err) {
      error.textContent = err.status === 429
        ? `Too many attempts: try again in ${err.retryAfter ?? 60} s.`
        : err.status === 401 ? 'Wrong key: no admin or operator has this key.' : `Sign-in failed: ${err.message}`;
      key.input.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(main, h('section', { class: 'signin' }, h('h1', {}, 'Enroll console'), form));
  key.input.focus();
}

function enter() {
  const info = currentSession();
  top.hidden = false;
  document.getElementById('operator-name').textContent = info.operator;
  document.querySelector('[data-page="operators"]').parentElement.hidden = !info.is_admin;
  startEvents();
  refreshBadge();
  if (!location.hash || location.hash === '#' || location.hash === '#/') location.hash = '#/approvals';
  else route();
}

async function route() {
  if (!currentSession()) return;
  const path = decodeURIComponent(location.hash.replace(/^#/, '')) || '/approvals';
  const match = routes.map(([re, page, nav, title]) => [path.match(re), page, nav, title]).find(([m]) => m);
  if (leavePage) { leavePage(); leavePage = null; }
  for (const link of document.querySelectorAll('.top nav a')) {
    if (match && link.dataset.page === match[2]) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!match) {
    clear(main, h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/approvals' }, 'Go to Approvals')));
    return;
  }
  const [m, page, , title] = match;
  document.title = `${title} · Enroll console`;
  const container = h('section', { 'aria-labelledby': 'page-title' });
  clear(main, container);
  try {
    leavePage = (await page()(container, ...m.slice(1))) || null;
  } catch (err) {
    if (err.status !== 401) clear(container, h('h1', { id: 'page-title' }, title), h('p', { class: 'error' }, `Could not load: ${err.message}`));
  }
  main.focus({ preventScroll: true });
}

// The pending count in the navigation bar, kept current on every page (the Approvals page sets it from its own list).
let badgeTimer = null;
function refreshBadge() {
  clearTimeout(badgeTimer);
  badgeTimer = setTimeout(async () => {
    if (!currentSession() || location.hash.startsWith('#/approvals')) return;
    try { setPendingBadge((await get('/api/provisioning-operations?status=pending&limit=1000')).items.length); } catch { /* shown on the next event */ }
  }, 300);
}
subscribe('operation', refreshBadge);
subscribe('poll', refreshBadge);

onSessionExpired(() => showSignIn('Your session has ended: sign in again.'));
window.addEventListener('hashchange', route);
document.getElementById('sign-out').addEventListener('click', async () => {
  await signOut();
  flash('Signed out.');
  showSignIn();
});

(async () => {
  try {
    if (await resumeSession()) { enter(); return; }
  } catch { /* show the form */ }
  showSignIn();
})();
