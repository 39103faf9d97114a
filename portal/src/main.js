// The portal: sign-in, the server list and a server's page, routed by the
// URL's fragment (#/ and #/servers/ID) so rescued serves one page.
import '@xterm/xterm/css/xterm.css';
import './style.css';
import { api, ApiError, setCsrf, sid } from './api.js';
import { h, since, startTicker, stateBadge } from './util.js';
import { serverPage } from './server.js';

const app = document.getElementById('app');
const who = document.getElementById('who');
const signout = document.getElementById('signout');
let session = null;
let leave = null; // the current view's clean-up (streams, sockets)

function show(...nodes) {
  if (leave) leave();
  leave = null;
  app.replaceChildren(...nodes);
}

function signedIn(s) {
  session = s;
  setCsrf(s.csrf_token);
  who.textContent = s.role === 'admin' ? 'admin' : 'project ' + s.project;
  signout.hidden = false;
}

function signedOut() {
  session = null;
  setCsrf(null);
  who.textContent = '';
  signout.hidden = true;
}

function signInView(message) {
  const input = h('input', {
    id: 'token', type: 'password', name: 'token', autocomplete: 'current-password',
    required: true, spellcheck: 'false',
  });
  const status = h('p', { class: 'error', role: 'alert' }, message || '');
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'signin', 'aria-label': 'Sign in' },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste your project token (or the admin token) once; the browser keeps a session cookie, never the token.'),
    h('label', { for: 'token' }, 'Token'), input, button, status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    status.textContent = '';
    try {
      const s = await api('POST', '/v1/session', { token: input.value });
      input.value = '';
      signedIn(s);
      route();
    } catch (err) {
      status.textContent = err.status === 401 ? 'Wrong token.' : err.message;
    } finally {
      button.disabled = false;
    }
  });
  show(form);
  input.focus();
}

// A stream of events with the cookie; reconnects by itself (EventSource).
export function eventStream(path, onEvent) {
  const es = new EventSource(path, { withCredentials: true });
  for (const kind of ['transition', 'audit', 'boot', 'error', 'action', 'message'])
    es.addEventListener(kind, (m) => {
      try {
        onEvent(JSON.parse(m.data));
      } catch {
        /* a keepalive or a partial line */
      }
    });
  return es;
}

function serverRow(s) {
  return h('tr', { 'data-id': s.id },
    h('td', {}, h('a', { href: '#/servers/' + sid(s.id) }, s.id)),
    h('td', {}, s.name),
    h('td', {}, stateBadge(s.state), ' ',
      h('span', { class: 'muted since', 'data-since': s.state_since || '' }, since(s.state_since))),
    h('td', {}, s.project),
    h('td', { class: 'error' }, s.last_error || ''));
}

async function listView() {
  const body = h('tbody', {});
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading…');
  const table = h('table', { class: 'servers' },
    h('caption', {}, 'Servers'),
    h('thead', {}, h('tr', {}, ['Server', 'Name', 'State', 'Project', 'Last error'].map((t) => h('th', { scope: 'col' }, t)))),
    body);
  show(h('h1', {}, 'Servers'), status, h('div', { class: 'scroll' }, table));
  let rows = new Map();
  const load = async () => {
    const data = await api('GET', '/v1/servers');
    rows = new Map();
    body.replaceChildren(...data.servers.map((s) => {
      const tr = serverRow(s);
      rows.set(s.id, tr);
      return tr;
    }));
    status.textContent = data.servers.length
      ? `${data.servers.length} server${data.servers.length === 1 ? '' : 's'}`
      : 'No servers.';
  };
  try {
    await load();
  } catch (err) {
    return failed(err);
  }
  // Live: each event names a server; its row is fetched again.
  const es = eventStream('/v1/events', async (ev) => {
    try {
      const s = await api('GET', '/v1/servers/' + sid(ev.server));
      const old = rows.get(s.id);
      const tr = serverRow(s);
      rows.set(s.id, tr);
      if (old) old.replaceWith(tr);
      else body.append(tr);
    } catch {
      /* gone, or signed out: the next load says so */
    }
  });
  leave = () => es.close();
}

function failed(err) {
  if (err instanceof ApiError && err.status === 401) {
    signedOut();
    return signInView('Your session ended: sign in again.');
  }
  show(h('h1', {}, err.status === 404 ? 'Not found' : 'Error'),
    h('p', { class: 'error', role: 'alert' }, err.message),
    h('p', {}, h('a', { href: '#/' }, 'Back to the servers')));
}

async function route() {
  if (!session) {
    try {
      signedIn(await api('GET', '/v1/session'));
    } catch {
      return signInView();
    }
  }
  const m = location.hash.match(/^#\/servers\/([^/]+)$/);
  if (m) {
    if (leave) leave();
    leave = null;
    try {
      leave = await serverPage(app, decodeURIComponent(m[1]), { session, eventStream, failed });
    } catch (err) {
      failed(err);
    }
  } else {
    await listView();
  }
  app.focus({ preventScroll: true });
}

signout.addEventListener('click', async () => {
  try {
    await api('DELETE', '/v1/session');
  } catch {
    /* already ended */
  }
  signedOut();
  location.hash = '#/';
  signInView('Signed out.');
});

window.addEventListener('hashchange', route);
startTicker();
route();
