// Small DOM and time helpers shared by the views.

// h('button', {type: 'button', onclick: f}, 'Rescue'): an element with
// attributes (on* are listeners; false/null are left out) and children.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// "3m 12s", "2h 5m", "4d 1h": how long since (or until) a time.
export function span(ms) {
  let s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function since(iso) {
  return iso ? span(Date.now() - Date.parse(iso)) : '';
}

export function clock(iso) {
  if (!iso) return '';
  const t = new Date(iso);
  return t.toLocaleString(undefined, { hour12: false });
}

// One timer for every "for 3m 12s" on the page: elements with
// data-since (ISO time) or data-until are refreshed each second.
export function startTicker() {
  setInterval(() => {
    for (const el of document.querySelectorAll('[data-since]'))
      el.textContent = since(el.dataset.since);
    for (const el of document.querySelectorAll('[data-until]')) {
      const left = Date.parse(el.dataset.until) - Date.now();
      el.textContent = left > 0 ? span(left) + ' left' : 'expired';
    }
  }, 1000);
}

// The states in which a server takes an action (the daemon decides; this
// only greys out what it would refuse, as fsm.c does).
const STABLE = new Set(['active', 'rescue', 'rescue_failed', 'exit_failed']);
export function allowed(state, action) {
  if (!STABLE.has(state)) return false;
  if (action === 'rescue') return state !== 'rescue';
  if (action === 'exit_rescue') return state !== 'active';
  return true;
}

export function stateBadge(state) {
  const kind = STABLE.has(state)
    ? state.endsWith('failed') ? 'bad' : state === 'rescue' ? 'rescue' : 'ok'
    : 'busy';
  return h('span', { class: 'state state-' + kind }, state);
}
