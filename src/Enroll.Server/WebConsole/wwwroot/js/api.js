// The console's access to the server's JSON API: the session (cookie + CSRF token), errors as exceptions, live events.

/** An answer that was not 2xx: status, the problem's detail, and the Retry-After seconds of a 429. */
export class ApiError extends Error {
  constructor(status, title, detail, retryAfter) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.retryAfter = retryAfter;
  }
}

const session = { info: null, bearer: null };
const expiryListeners = [];

/** Called when the server no longer accepts the session (expired, signed out elsewhere). */
export function onSessionExpired(listener) { expiryListeners.push(listener); }

export function currentSession() { return session.info; }

async function problemOf(response) {
  let title = response.statusText, detail = '';
  try {
    const body = await response.json();
    title = body.title || title;
    detail = body.detail || '';
  } catch { /* not JSON */ }
  const retry = Number.parseInt(response.headers.get('Retry-After') || '', 10);
  return new ApiError(response.status, title, detail, Number.isFinite(retry) ? retry : undefined);
}

/**
 * One API request. State changes carry the session's CSRF token; a 401 on a signed-in session means it ended.
 * Returns { body, etag, status }; throws ApiError for anything but 2xx (and 304).
 */
export async function request(method, path, { body, headers = {}, contentType = 'application/json' } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (body !== undefined) h['Content-Type'] = contentType;
  if (session.bearer) h.Authorization = `Bearer ${session.bearer}`;
  else if (session.info && method !== 'GET' && method !== 'HEAD') h['X-Enroll-CSRF'] = session.info.csrf_token;
  const response = await fetch(path, {
    method, headers: h, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && (session.info || session.bearer) && path !== '/api/session') {
    session.info = null;
    session.bearer = null;
    localStorage.removeItem(HINT);
    for (const listener of expiryListeners) listener();
    throw new ApiError(401, 'signed out', 'Your session has ended; sign in again.');
  }
  if (!response.ok) throw await problemOf(response);
  const text = response.status === 204 ? '' : await response.text();
  return { body: text ? JSON.parse(text) : null, etag: response.headers.get('ETag'), status: response.status };
}

export const get = async (path) => (await request('GET', path)).body;
export const post = async (path, body = {}) => (await request('POST', path, { body })).body;
export const del = async (path) => (await request('DELETE', path)).body;

/** Signs in with the admin key or an operator's key: the server sets the HttpOnly session cookie. */
// The cookie is HttpOnly: this flag only says whether asking the server for a session is worth a request.
const HINT = 'enroll.console.signed-in';

export async function signIn(key) {
  const response = await fetch('/api/session', {
    method: 'POST', credentials: 'same-origin', cache: 'no-store',
    // The key also as the bearer credential: a server whose gate checks every /api request (sessions or not) sees it.
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${key}` },
    body: JSON.stringify({ key }),
  });
  if (response.status === 404 || response.status === 405) {
    // A server without console sessions: use the key itself for this tab only (nothing stored).
    session.bearer = key;
    await get('/api/tokens');
    session.info = { operator: 'admin', is_admin: true, csrf_token: '', expires_at: null };
    return session.info;
  }
  if (!response.ok) throw await problemOf(response);
  session.info = await response.json();
  localStorage.setItem(HINT, '1');
  return session.info;
}

/** The session of the cookie this browser already has, or null. */
export async function resumeSession() {
  if (!localStorage.getItem(HINT)) return null;
  const response = await fetch('/api/session', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
  if (!response.ok) { localStorage.removeItem(HINT); return null; }
  session.info = await response.json();
  return session.info;
}

export async function signOut() {
  const info = session.info;
  const bearer = session.bearer;
  session.info = null;
  session.bearer = null;
  localStorage.removeItem(HINT);
  if (bearer || !info) return;
  try {
    await fetch('/api/session', { method: 'DELETE', credentials: 'same-origin', headers: { 'X-Enroll-CSRF': info.csrf_token } });
  } catch { /* the cookie expires on its own */ }
}

// --- Live events: one EventSource for the whole console; pages subscribe by kind. -----------------------------------
const listeners = new Map();
let source = null;
let pollTimer = null;

/** Subscribes to server events of a kind (operation, command, device, twin, resync, poll); returns the unsubscribe. */
export function subscribe(kind, listener) {
  if (!listeners.has(kind)) listeners.set(kind, new Set());
  listeners.get(kind).add(listener);
  return () => listeners.get(kind).delete(listener);
}

function dispatch(kind, data) {
  for (const listener of listeners.get(kind) || []) {
    try { listener(data); } catch (e) { console.error(e); }
  }
}

export const liveState = { mode: 'off' };

/** Opens the event stream; when the server has none (or cannot be reached that way), pages are refreshed every 3 s. */
export function startEvents() {
  stopEvents();
  if (session.bearer || typeof EventSource === 'undefined') { startPolling(); return; }
  source = new EventSource('/api/events', { withCredentials: true });
  liveState.mode = 'connecting';
  source.onopen = () => { liveState.mode = 'live'; dispatch('resync', {}); };
  for (const kind of ['operation', 'command', 'device', 'twin', 'resync']) {
    source.addEventListener(kind, (e) => {
      let data = {};
      try { data = JSON.parse(e.data); } catch { /* keep {} */ }
      dispatch(kind, data);
    });
  }
  source.onerror = () => {
    // CLOSED: the server answered with something other than an event stream (no such endpoint, signed out).
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      startPolling();
    } else {
      liveState.mode = 'reconnecting';
    }
  };
}

function startPolling() {
  liveState.mode = 'polling';
  pollTimer = setInterval(() => dispatch('poll', {}), 3000);
}

export function stopEvents() {
  if (source) { source.close(); source = null; }
  if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  liveState.mode = 'off';
}
