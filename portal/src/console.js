// The console pane: xterm.js over rescued's WebSocket, with the rules of
// Serial over SSH (the daemon enforces them; this shows them): one writer
// and any number of watchers, "Take the seat", a notice when someone else
// takes it, a read-only badge while the server changes state, the menu
// (Break, SysRq, REISUB, NMI), a watch-only mode, and reconnection with
// backoff that marks the gap in the scrollback.  Also the recordings and
// their playback.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { api, sid } from './api.js';
import { clock, h, span } from './util.js';
import { confirmDialog } from './dialogs.js';

// The wire (docs/design.md, "Contracts added in the second round"): the
// ticket rides in the subprotocol list, binary frames are console bytes,
// text frames JSON control messages.
export const PROTO = {
  path: (id, watchOnly) => `/v1/servers/${sid(id)}/console/ws${watchOnly ? '?mode=watch' : ''}`,
  subprotocols: (ticket) => ['rescued.console', 'ticket.' + ticket],
  take: () => ({ type: 'take_seat' }),
  brk: () => ({ type: 'break' }),
  // The daemon sends a sequence key by key, as one types it.
  sysrq: (keys) => ({ type: 'sysrq', keys }),
  nmi: () => ({ type: 'nmi' }),
  resize: (cols, rows) => ({ type: 'resize', cols, rows }),
};

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000, 30000];
const SYSRQ_KEYS = [
  ['h', 'h: help'], ['r', 'r: keyboard raw mode off'], ['e', 'e: SIGTERM to all'],
  ['i', 'i: SIGKILL to all'], ['s', 's: sync'], ['u', 'u: remount read-only'],
  ['b', 'b: reboot now'], ['o', 'o: power off'], ['c', 'c: crash (kdump)'],
  ['t', 't: show tasks'], ['w', 'w: blocked tasks'], ['m', 'm: memory'],
  ['l', 'l: backtrace all CPUs'], ['p', 'p: registers'], ['f', 'f: OOM kill'],
  ['k', 'k: SAK'], ['9', '9: loglevel 9'], ['0', '0: loglevel 0'],
];

export function consolePane(srv, ctx) {
  const enc = new TextEncoder();
  const status = h('span', { class: 'conn', role: 'status', 'aria-label': 'Connection' }, 'Connecting…');
  const seat = h('span', { class: 'seat', 'aria-label': 'Seat' }, '');
  const badge = h('span', { class: 'badge ro', hidden: true }, 'read-only');
  const take = h('button', { type: 'button' }, 'Take the seat');
  const watch = h('input', { type: 'checkbox', id: 'watch-only-' + srv.id });
  const menuButton = h('button', { type: 'button', 'aria-haspopup': 'true', 'aria-expanded': 'false' }, 'Console menu');
  const notices = h('p', { class: 'notice', role: 'alert', 'aria-label': 'Console notice' });
  const gapNote = h('p', { class: 'muted gap', role: 'status', 'aria-label': 'Console gap', hidden: true });
  const screen = h('div', { class: 'term', 'aria-label': 'Console screen' });
  const sysrqKey = h('select', { id: 'sysrq-key-' + srv.id }, SYSRQ_KEYS.map(([k, t]) => h('option', { value: k }, t)));
  const sequence = h('input', { id: 'sysrq-seq-' + srv.id, type: 'text', value: 'reisub', size: 8, spellcheck: 'false' });
  const recBody = h('tbody', {});
  const recStatus = h('p', { class: 'muted' });

  const menu = h('div', { class: 'menu', role: 'group', 'aria-label': 'Console menu', hidden: true },
    h('button', { type: 'button', onclick: () => control(PROTO.brk(), 'break sent') }, 'Break'),
    h('span', { class: 'row' }, h('label', { for: sysrqKey.id }, 'SysRq key'), sysrqKey,
      h('button', { type: 'button', onclick: () => control(PROTO.sysrq(sysrqKey.value), `SysRq ${sysrqKey.value} sent`) }, 'Send SysRq')),
    h('span', { class: 'row' }, h('label', { for: sequence.id }, 'SysRq sequence'), sequence,
      h('button', { type: 'button', onclick: () => sendSequence() }, 'Send sequence')),
    h('button', { type: 'button', class: 'danger', onclick: () => nmi() }, 'NMI'));

  const element = h('section', { class: 'card console', 'aria-label': 'Console' },
    h('div', { class: 'console-head' }, h('h2', {}, 'Console'), status, seat, badge),
    h('div', { class: 'toolbar console-live' }, take,
      h('span', { class: 'row' }, watch, h('label', { for: watch.id }, 'Watch only')),
      menuButton),
    menu, notices, gapNote, screen,
    h('details', { class: 'recordings' },
      h('summary', {}, 'Recordings'), recStatus,
      h('div', { class: 'scroll' }, h('table', { class: 'small' }, h('caption', {}, 'Recordings'),
        h('thead', {}, h('tr', {}, ['When', 'Who', 'Length', ''].map((t) => h('th', { scope: 'col' }, t)))),
        recBody))));

  const term = new Terminal({
    convertEol: false, scrollback: 5000, fontSize: 14, cursorBlink: true,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace',
    theme: { background: '#111417' },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  const refit = () => {
    try {
      fit.fit();
    } catch {
      /* not laid out yet */
    }
  };
  requestAnimationFrame(refit);
  const ro = new ResizeObserver(() => {
    refit();
    if (ws && ws.readyState === 1) send(PROTO.resize(term.cols, term.rows));
  });
  ro.observe(screen);

  let ws = null;
  let closed = false;
  let attempt = 0;
  let timer = null;
  let lostAt = null;
  let writer = false;
  let readonly = false;

  function send(obj) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj));
  }
  function control(obj, said) {
    if (!ws || ws.readyState !== 1) {
      notices.textContent = 'Not connected.';
      return;
    }
    send(obj);
    notices.textContent = said;
  }
  function sendSequence() {
    const keys = sequence.value.trim();
    if (!/^[0-9a-z]{1,16}$/.test(keys)) {
      notices.textContent = 'A sequence is up to 16 SysRq keys, like reisub.';
      return;
    }
    control(PROTO.sysrq(keys), `SysRq ${keys} sent, key by key`);
  }
  async function nmi() {
    if (await confirmDialog(`Send an NMI to ${srv.id}?`,
      'A non-maskable interrupt: a hung kernel panics or dumps its state (kdump). A healthy one may too.', 'NMI'))
      control(PROTO.nmi(), 'NMI sent');
  }
  menuButton.addEventListener('click', () => {
    menu.hidden = !menu.hidden;
    menuButton.setAttribute('aria-expanded', String(!menu.hidden));
  });
  take.addEventListener('click', () => control(PROTO.take(), 'asked for the seat'));
  watch.addEventListener('change', () => reconnect('watch-only ' + (watch.checked ? 'on' : 'off')));

  function showSeat() {
    const ro = watch.checked;
    seat.textContent = ro ? 'watching only' : writer ? 'you have the seat' : 'watching';
    take.disabled = ro || writer;
    badge.hidden = !(readonly || ro);
    badge.textContent = ro ? 'watch only' : 'read-only';
    term.options.cursorBlink = writer && !readonly && !ro;
  }

  // Keystrokes go to the daemon whatever the seat: it is the daemon that
  // keeps a watcher's or a watch-only session's bytes off the console
  // (one set of rules, with Serial over SSH), and says so.
  term.onData((d) => {
    if (ws && ws.readyState === 1) ws.send(enc.encode(d));
  });
  // Drop the socket as a failed network would (the tests' way to see the
  // reconnection and its gap).
  element.consoleDrop = () => {
    if (ws) ws.close(4000, 'dropped');
  };
  // The text on the console (scrollback too), for copying and the tests.
  element.consoleText = () => {
    const b = term.buffer.active;
    const lines = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? '');
    return lines.join('\n');
  };
  // The line the cursor is on, as an index into consoleText()'s lines.
  element.consoleCursorLine = () => term.buffer.active.baseY + term.buffer.active.cursorY;

  // {"type":"role","role":"writer"|"watcher","read_only":b,"reason":s}
  // and {"type":"notice","text":s}.
  function onControl(m) {
    if (m.type === 'role') {
      writer = m.role === 'writer';
      readonly = !!m.read_only;
      badge.title = m.reason || '';
    } else if (m.type === 'notice' && m.text) {
      notices.textContent = m.text;
    }
    showSeat();
  }

  async function connect() {
    if (closed) return;
    clearTimeout(timer);
    status.textContent = lostAt ? 'Reconnecting…' : 'Connecting…';
    let t;
    try {
      t = await api('POST', `/v1/servers/${sid(srv.id)}/console/ticket`);
    } catch (err) {
      if (err.status === 401) {
        status.textContent = 'Your session ended: sign in again to reattach.';
        return;
      }
      if (err.status === 404 || err.status === 403) {
        // A server without a console (or not ours): nothing to show.
        status.textContent = 'No console: ' + err.message;
        for (const el of [element.querySelector('.console-live'), menu, screen]) el.hidden = true;
        return;
      }
      return retry();
    }
    if (closed) return;
    const url = new URL(PROTO.path(srv.id, watch.checked), location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const sock = new WebSocket(url, PROTO.subprotocols(t.ticket));
    sock.binaryType = 'arraybuffer';
    ws = sock;
    sock.onopen = () => {
      if (lostAt) {
        const gap = Date.now() - lostAt;
        // Said above the screen too: the replay that follows scrolls the
        // marker out of view.
        gapNote.hidden = false;
        gapNote.textContent = `Reconnected: the console was out of reach for ${span(gap)} (from ${clock(new Date(lostAt).toISOString())}); the replay below picks up.`;
        term.write(`\r\n\x1b[2m--- console was out of reach for ${span(gap)} (${clock(new Date(lostAt).toISOString())} to ${clock(new Date().toISOString())}); what it printed then is in the replay or the log ---\x1b[0m\r\n`);
      }
      lostAt = null;
      attempt = 0;
      status.textContent = 'Connected';
      send(PROTO.resize(term.cols, term.rows));
      showSeat();
    };
    sock.onmessage = (e) => {
      if (typeof e.data === 'string') {
        try {
          onControl(JSON.parse(e.data));
        } catch {
          /* not ours */
        }
      } else {
        term.write(new Uint8Array(e.data));
      }
    };
    sock.onclose = (e) => {
      if (ws !== sock) return;
      ws = null;
      writer = false;
      showSeat();
      if (closed) return;
      if (!lostAt) lostAt = Date.now();
      if (e.code === 4404 || e.code === 1008) {
        status.textContent = 'Refused: ' + (e.reason || 'no access');
        return;
      }
      retry();
    };
  }

  function retry() {
    if (closed) return;
    if (!lostAt) lostAt = Date.now();
    const wait = BACKOFF_MS[Math.min(attempt++, BACKOFF_MS.length - 1)];
    status.textContent = `Disconnected for ${span(Date.now() - lostAt)}; retrying in ${span(wait)}`;
    timer = setTimeout(connect, wait);
  }

  function reconnect(why) {
    notices.textContent = why;
    const old = ws;
    ws = null;
    if (old) old.close(1000);
    attempt = 0;
    lostAt = null;
    connect();
  }

  // --- recordings ---
  async function loadRecordings() {
    recStatus.textContent = 'Loading…';
    try {
      const d = await api('GET', `/v1/servers/${sid(srv.id)}/console/recordings`);
      const list = d.recordings || [];
      recStatus.textContent = list.length ? '' : 'No recordings.';
      recBody.replaceChildren(...list.map((r) => {
        const n = r.n;
        const len = r.ended_at ? Date.parse(r.ended_at) - Date.parse(r.started_at) : null;
        return h('tr', {},
          h('td', {}, clock(r.started_at)),
          h('td', {}, `${r.who || ''}${r.transport ? ' (' + r.transport + ')' : ''}`),
          h('td', {}, len !== null ? span(len) : 'still open'),
          h('td', {}, h('button', { type: 'button', class: 'small', onclick: () => play(n) }, `Play ${n}`),
            ' ', h('a', { href: `/v1/servers/${sid(srv.id)}/console/recordings/${n}.cast`, download: `${srv.id}-${n}.cast` }, 'Download')));
      }));
    } catch (err) {
      recStatus.textContent = err.status === 404 ? 'No recordings here.' : err.message;
    }
  }
  element.querySelector('details').addEventListener('toggle', (e) => {
    if (e.target.open) loadRecordings();
  });

  async function play(n) {
    const resp = await fetch(`/v1/servers/${sid(srv.id)}/console/recordings/${n}.cast`, { credentials: 'same-origin' });
    if (!resp.ok) {
      recStatus.textContent = `Recording ${n}: ${resp.status}`;
      return;
    }
    const lines = (await resp.text()).split('\n').filter(Boolean);
    const header = JSON.parse(lines.shift() || '{}');
    const events = lines.map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return null;
      }
    }).filter((e) => Array.isArray(e) && e[1] === 'o');
    const box = h('div', { class: 'term play' });
    const state = h('span', { role: 'status' }, '');
    const pause = h('button', { type: 'button' }, 'Pause');
    const close = h('button', { type: 'button' }, 'Close');
    const dlg = h('dialog', { class: 'dialog wide', 'aria-label': `Recording ${n}` },
      h('h2', {}, `Recording ${n} of ${srv.id}`), box, h('div', { class: 'buttons' }, state, pause, close));
    document.body.append(dlg);
    dlg.showModal();
    const pt = new Terminal({ cols: header.width || 80, rows: header.height || 24, convertEol: false, disableStdin: true });
    pt.open(box);
    let i = 0;
    let paused = false;
    let t0 = performance.now();
    let shift = 0; // idle time cut out (at most 2 s of silence is played)
    let ptimer = null;
    const step = () => {
      if (paused || i >= events.length) {
        if (i >= events.length) state.textContent = 'End of recording';
        return;
      }
      const now = (performance.now() - t0) / 1000 + shift;
      while (i < events.length && events[i][0] <= now) pt.write(events[i++][2]);
      if (i < events.length) {
        const gap = events[i][0] - now;
        if (gap > 2) shift += gap - 2;
        state.textContent = `${(events[i - 1]?.[0] ?? 0).toFixed(1)} s`;
        ptimer = setTimeout(step, Math.min(gap, 2) * 1000);
      } else step();
    };
    pause.addEventListener('click', () => {
      paused = !paused;
      pause.textContent = paused ? 'Play' : 'Pause';
      if (!paused) {
        t0 = performance.now() - ((events[i]?.[0] ?? 0) - shift) * 1000;
        step();
      }
    });
    close.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => {
      clearTimeout(ptimer);
      pt.dispose();
      dlg.remove();
    });
    step();
  }

  connect();
  return {
    element,
    // The daemon says when the console is read-only (role messages).
    stateChanged() {},
    close() {
      closed = true;
      clearTimeout(timer);
      ro.disconnect();
      if (ws) ws.close(1000);
      term.dispose();
    },
  };
}
