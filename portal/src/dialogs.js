// The confirming dialogs: Rescue (the project's keys, extra keys pasted or
// uploaded and checked by rescued before the rescue is asked for, an
// optional time limit), and a plain "are you sure" whose confirm button is
// named like the action.
import { api, sid } from './api.js';
import { h } from './util.js';

let seq = 0;

function modal(titleText, ...content) {
  const tid = 'dlg-title-' + ++seq;
  const dlg = h('dialog', { 'aria-labelledby': tid, class: 'dialog' },
    h('h2', { id: tid }, titleText), ...content);
  document.body.append(dlg);
  dlg.addEventListener('close', () => setTimeout(() => dlg.remove(), 0));
  return dlg;
}

export function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const ok = h('button', { type: 'button', class: 'danger' }, confirmLabel);
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const dlg = modal(title, h('p', {}, text), h('div', { class: 'buttons' }, cancel, ok));
    let answer = false;
    ok.addEventListener('click', () => {
      answer = true;
      dlg.close();
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => resolve(answer));
    dlg.showModal();
    cancel.focus();
  });
}

// Lines that are keys (blank lines and # comments are not).
function keyLines(text) {
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

export function rescueDialog(srv) {
  return new Promise((resolve) => {
    const projectKeys = h('ul', { class: 'keys', 'aria-label': "The project's keys" },
      h('li', { class: 'muted' }, 'Loading…'));
    const area = h('textarea', { id: 'rescue-keys', rows: 4, spellcheck: 'false',
      placeholder: 'ssh-ed25519 AAAA… you@laptop' });
    const file = h('input', { id: 'rescue-keyfile', type: 'file', accept: '.pub,text/plain' });
    const ttl = h('input', { id: 'rescue-ttl', type: 'text', inputmode: 'text',
      placeholder: 'e.g. 2h (empty: until Exit rescue)', pattern: '^\\s*(\\d+[smhd]?)?\\s*$' });
    const check = h('ul', { class: 'checks', 'aria-label': 'Key check', 'aria-live': 'polite' });
    const status = h('p', { class: 'error', role: 'alert' });
    const ok = h('button', { type: 'button', class: 'primary' }, 'Rescue');
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const dlg = modal(`Rescue ${srv.id}`,
      h('p', {}, `${srv.id} is reset and boots the rescue system; your keys let you in as root.`),
      h('h3', {}, "The project's keys"), projectKeys,
      h('label', { for: 'rescue-keys' }, 'SSH keys'), area,
      h('label', { for: 'rescue-keyfile' }, 'Or upload a public key file'), file,
      check,
      h('label', { for: 'rescue-ttl' }, 'Time limit'), ttl,
      status,
      h('div', { class: 'buttons' }, cancel, ok));
    let answer = null;

    api('GET', `/v1/servers/${sid(srv.id)}/keys`).then((d) => {
      projectKeys.replaceChildren(...(d.keys.length
        ? d.keys.map((k) => h('li', {}, h('code', {}, `${k.type} ${k.fingerprint}`), k.comment ? ' ' + k.comment : ''))
        : [h('li', { class: 'muted' }, 'none: add a key below, or nobody can log in')]));
    }).catch((e) => projectKeys.replaceChildren(h('li', { class: 'error' }, e.message)));

    file.addEventListener('change', async () => {
      for (const f of file.files) {
        if (f.size > 64 * 1024) {
          status.textContent = `${f.name} is too large for a public key file`;
          continue;
        }
        const text = await f.text();
        area.value = (area.value.trim() ? area.value.trim() + '\n' : '') + text.trim();
      }
      file.value = '';
      verify();
    });

    // rescued checks the keys as a rescue would; nothing is sent with a
    // key it would refuse.
    let checked = null;
    async function verify() {
      const lines = keyLines(area.value);
      checked = null;
      if (!lines.length) {
        check.replaceChildren();
        checked = [];
        return true;
      }
      const d = await api('POST', '/v1/keys/check', { ssh_keys: lines });
      let good = true;
      check.replaceChildren(...d.keys.map((k, i) => {
        good &&= k.ok;
        return h('li', { class: k.ok ? 'ok' : 'error' },
          k.ok ? `✓ ${k.type} ${k.fingerprint}${k.comment ? ' ' + k.comment : ''}`
            : `✗ line ${i + 1}: ${k.error}`);
      }));
      if (good) checked = lines;
      return good;
    }
    // Checked when the field is left, except for the Rescue button: its
    // press checks them itself, and a list drawn between the press and
    // the release would move the button from under the pointer (the
    // click lost).
    area.addEventListener('focusout', (e) => {
      if (e.relatedTarget !== ok)
        verify().catch((err) => (status.textContent = err.message));
    });

    ok.addEventListener('click', async () => {
      status.textContent = '';
      ok.disabled = true;
      try {
        if (!(await verify())) {
          status.textContent = 'Fix or remove the keys marked ✗.';
          return;
        }
        const t = ttl.value.trim();
        if (t && !/^\d+[smhd]?$/.test(t)) {
          status.textContent = 'Time limit: a number of seconds, or like 15m, 2h, 1d.';
          return;
        }
        answer = {};
        if (checked.length) answer.ssh_keys = checked;
        if (t) answer.ttl = /^\d+$/.test(t) ? Number(t) : t;
        dlg.close();
      } catch (e) {
        status.textContent = e.message;
      } finally {
        ok.disabled = false;
      }
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => resolve(answer));
    dlg.showModal();
    area.focus();
  });
}
