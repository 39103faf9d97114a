// A server's page: its details, the rescue object while in rescue, the
// action buttons (enabled as the state allows; the daemon's reason shown
// on 409), the progress of a move as `rescuectl --wait` prints it, the
// live event timeline and the console pane.
import { api, sid } from './api.js';
import { allowed, clock, h, since, span, stateBadge } from './util.js';
import { consolePane } from './console.js';
import { rescueDialog, confirmDialog } from './dialogs.js';

const ACTIONS = [
  ['rescue', 'Rescue'],
  ['exit_rescue', 'Exit rescue'],
  ['reboot', 'Reboot'],
  ['power_on', 'Power on'],
  ['power_off', 'Power off'],
];
// Where each move ends, and where it fails (rescuectl --wait's targets).
const TARGET = { rescue: ['rescue', 'rescue_failed'], exit_rescue: ['active', 'exit_failed'] };

function size(bytes) {
  if (typeof bytes !== 'number') return bytes ?? '';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (bytes >= 1000 && i < u.length - 1) {
    bytes /= 1000;
    i++;
  }
  return (i ? bytes.toFixed(1) : bytes) + ' ' + u[i];
}

function table(label, cols, rows) {
  if (!Array.isArray(rows) || !rows.length) return null;
  return h('div', { class: 'scroll' },
    h('table', { class: 'small' }, h('caption', {}, label),
      h('thead', {}, h('tr', {}, cols.map(([, t]) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, cols.map(([k, , f]) => {
        const v = r[k];
        return h('td', {}, f ? f(v) : Array.isArray(v) ? v.join(', ') : v ?? '');
      }))))));
}

function copyButton(text, label) {
  const b = h('button', { type: 'button', class: 'small', 'aria-label': label }, 'Copy');
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = 'Copied';
    } catch {
      // No clipboard (plain HTTP on another host): select the text instead.
      const code = b.previousElementSibling;
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      b.textContent = 'Selected: press Ctrl-C';
    }
    setTimeout(() => (b.textContent = 'Copy'), 2500);
  });
  return b;
}

function rescueSection(r) {
  const ssh = r.ip ? `ssh root@${r.ip}` : null;
  const keys = Array.isArray(r.ssh_host_keys) ? r.ssh_host_keys : [];
  return h('section', { class: 'card', 'aria-label': 'Rescue system' },
    h('h2', {}, 'Rescue system'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'IP'), h('dd', {}, r.ip || 'not reported yet'),
      ssh && h('dt', {}, 'Log in'),
      ssh && h('dd', {}, h('code', { class: 'ssh' }, ssh), ' ', copyButton(ssh, 'Copy ssh command')),
      h('dt', {}, 'Expires'),
      h('dd', {}, r.expires_at
        ? [clock(r.expires_at), ' (', h('span', { 'data-until': r.expires_at, class: 'countdown' },
          span(Date.parse(r.expires_at) - Date.now()) + ' left'), ')']
        : 'no time limit'),
      r.root_guess && h('dt', {}, 'Root'),
      r.root_guess && h('dd', {}, h('code', {}, r.root_guess.mount || r.root_guess.device || ''),
        r.root_guess.os ? ` (${r.root_guess.os})` : '')),
    h('h3', {}, 'Host key fingerprints'),
    keys.length
      ? h('ul', { class: 'fingerprints', 'aria-label': 'Host key fingerprints' },
        keys.map((k) => h('li', {}, h('code', {}, typeof k === 'string' ? k : `${k.type || ''} ${k.fingerprint || ''}`))))
      : h('p', { class: 'muted' }, 'none reported'),
    table('Disks', [['path', 'Device'], ['type', 'Type'], ['size', 'Size', size], ['fstype', 'FS'],
      ['label', 'Label'], ['holds', 'Holds']], r.disks),
    table('MD arrays', [['path', 'Array'], ['level', 'Level'], ['array_state', 'State'],
      ['degraded', 'Degraded'], ['devices', 'Devices']], r.md_arrays),
    table('NICs', [['name', 'Name'], ['mac', 'MAC'], ['state', 'State'], ['addresses', 'Addresses']], r.nics));
}

function eventLine(ev) {
  const move = ev.to ? `${ev.from || '?'} → ${ev.to}` : '';
  return h('li', { class: 'ev ev-' + ev.kind },
    h('time', { datetime: ev.at }, clock(ev.at)), ' ',
    h('span', { class: 'kind' }, ev.kind), ' ',
    move && h('strong', {}, move), move && ' ',
    ev.message || '', ev.actor ? h('span', { class: 'muted' }, ` (${ev.actor})`) : '');
}

export async function serverPage(app, id, ctx) {
  let srv = await api('GET', '/v1/servers/' + sid(id));
  const title = h('h1', {});
  const facts = h('dl', { class: 'facts' });
  const buttons = new Map();
  const notice = h('p', { class: 'error', role: 'alert' });
  const progress = h('pre', { class: 'progress', role: 'log', 'aria-label': 'Progress', hidden: true });
  const rescueSlot = h('div', {});
  const timeline = h('ol', { class: 'timeline', role: 'log', 'aria-label': 'Events' });
  let waiting = null; // {t0, target, failed} while a move is followed

  const bar = h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' });
  for (const [action, label] of ACTIONS) {
    const b = h('button', { type: 'button', 'data-action': action }, label);
    b.addEventListener('click', () => ask(action, label));
    buttons.set(action, b);
    bar.append(b);
  }

  function render() {
    title.replaceChildren(srv.id, srv.name && srv.name !== srv.id ? h('span', { class: 'muted' }, ' ' + srv.name) : '');
    facts.replaceChildren(...[
      h('dt', {}, 'State'), h('dd', { 'aria-label': 'State' }, stateBadge(srv.state), ' for ',
        h('span', { 'data-since': srv.state_since || '' }, since(srv.state_since))),
      h('dt', {}, 'Project'), h('dd', {}, srv.project),
      h('dt', {}, 'MAC'), h('dd', {}, h('code', {}, srv.mac)),
      h('dt', {}, 'Machine'), h('dd', {}, `${srv.arch}, ${srv.firmware}, power by ${srv.power}`),
      h('dt', {}, 'Serial over SSH'), h('dd', {}, h('code', {}, srv.console)),
      srv.deadline && h('dt', {}, 'Step deadline'),
      srv.deadline && h('dd', {}, clock(srv.deadline), srv.retries ? ` (retry ${srv.retries})` : ''),
      srv.last_error && h('dt', {}, 'Last error'),
      srv.last_error && h('dd', { class: 'error' }, srv.last_error)].filter(Boolean));
    for (const [action, b] of buttons) {
      const ok = allowed(srv.state, action);
      b.disabled = !ok;
      b.title = ok ? '' : `not while ${srv.state}`;
    }
    rescueSlot.replaceChildren(srv.state === 'rescue' && srv.rescue ? rescueSection(srv.rescue) : '');
  }

  async function ask(action, label) {
    notice.textContent = '';
    let body = { type: action };
    if (action === 'rescue') {
      const extra = await rescueDialog(srv);
      if (!extra) return;
      body = { ...body, ...extra };
    } else if (action !== 'power_on') {
      const ok = await confirmDialog(`${label} ${srv.id}?`,
        action === 'power_off' ? 'The server is switched off at once, without a shutdown.'
          : 'The server is reset at once, without a shutdown.', label);
      if (!ok) return;
    }
    // Followed from before the request: its first transition may come
    // down the stream before the answer does.
    if (TARGET[action]) {
      waiting = { t0: performance.now(), target: TARGET[action][0], failed: TARGET[action][1], label };
      progress.hidden = false;
      progress.textContent = `${label}: following ${srv.id}…\n`;
    }
    try {
      srv = await api('POST', `/v1/servers/${sid(srv.id)}/actions`, body);
      render();
    } catch (err) {
      waiting = null;
      progress.hidden = true;
      notice.textContent = err.status === 409 ? `Refused: ${err.message}` : err.message;
    }
  }

  // rescuectl --wait's lines: "[  12.3s] from -> to (message)".
  function follow(ev) {
    if (!waiting || !ev.to) return;
    const t = ((performance.now() - waiting.t0) / 1000).toFixed(1).padStart(6);
    progress.textContent += `[${t}s] ${ev.from} -> ${ev.to}${ev.message ? ` (${ev.message})` : ''}\n`;
    if (ev.to === waiting.target) {
      progress.textContent += `${waiting.label}: done.\n`;
      waiting = null;
    } else if (ev.to === waiting.failed) {
      progress.textContent += `${waiting.label} failed${srv.last_error ? ': ' + srv.last_error : ''}\n`;
      waiting = null;
    }
  }

  const cons = consolePane(srv, ctx);
  app.replaceChildren(
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Servers'), ' / ', srv.id),
    title,
    h('div', { class: 'cols' },
      h('div', { class: 'main-col' },
        h('section', { class: 'card', 'aria-label': 'Details' }, facts, bar, notice, progress),
        rescueSlot,
        cons.element),
      h('section', { class: 'card side', 'aria-label': 'Timeline' }, h('h2', {}, 'Timeline'), timeline)));
  render();

  const es = ctx.eventStream(`/v1/servers/${sid(srv.id)}/events`, async (ev) => {
    timeline.append(eventLine(ev));
    while (timeline.children.length > 300) timeline.firstChild.remove();
    timeline.lastChild.scrollIntoView?.({ block: 'nearest' });
    if (ev.to) {
      try {
        srv = await api('GET', '/v1/servers/' + sid(srv.id));
        render();
        cons.stateChanged(srv);
      } catch {
        /* the next event tries again */
      }
      follow(ev);
    } else if (ev.kind === 'boot' || ev.kind === 'action') {
      // The rescue report arrives with the phone-home, in a boot event.
      if (srv.state === 'rescue') {
        srv = await api('GET', '/v1/servers/' + sid(srv.id)).catch(() => srv);
        render();
      }
    }
  });
  return () => {
    es.close();
    cons.close();
  };
}
