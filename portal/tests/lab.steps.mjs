// Case 076: the portal and its console on the lab (one boot of srv1 for
// every step).  Env: PROJECT_TOKEN (project lab), USER_KEY (a .pub line),
// ADMIN_TOKEN.  The console's text is read from xterm.js's buffer through
// the Console region's consoleText().
const text = (p) => p.evaluate(() => document.querySelector('[aria-label="Console"]').consoleText());

async function until(p, what, ms, fn) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) {
      const t = await text(p).catch(() => '');
      throw new Error(`${what}: not within ${ms / 1000} s; the console shows:\n${t.split('\n').filter(Boolean).slice(-25).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}
// The console's lines from line `from` on; a mark is the cursor's line
// (output that follows lands there or below).
const linesAfter = async (p, from) => (await text(p)).split('\n').slice(from);
const lineCount = (p) => p.evaluate(() => document.querySelector('[aria-label="Console"]').consoleCursorLine());
const role = (p) => p.getByRole('region', { name: 'Console' }).getByLabel('Seat');
const writable = async (p) => (await role(p).textContent()) === 'you have the seat' &&
  (await p.getByRole('region', { name: 'Console' }).getByText('read-only', { exact: true }).isHidden());

async function type(p, s) {
  await p.locator('[aria-label="Console"] .xterm-helper-textarea').focus();
  await p.keyboard.type(s, { delay: 20 });
}

let mark = 0;
const tag = Math.floor(Date.now() / 1000) % 100000;

export const steps = [
  ['sign in as the lab project', async (t) => {
    const p = await t.open('a');
    await t.signIn(p, t.env.PROJECT_TOKEN);
    await p.getByRole('link', { name: 'srv1', exact: true }).waitFor();
    t.expect(await p.getByRole('link', { name: 'srv9', exact: true }).count() === 0, "the lab project sees the other project's srv9");
  }],
  ['open srv1: the console attaches', async (t) => {
    const p = t.pages.a;
    await p.getByRole('link', { name: 'srv1', exact: true }).click();
    const c = p.getByRole('region', { name: 'Console' });
    await c.getByRole('status', { name: 'Connection' }).filter({ hasText: 'Connected' }).waitFor();
    await c.getByRole('button', { name: 'Take the seat' }).waitFor();
  }],
  ['rescue with a key', async (t) => {
    const p = t.pages.a;
    await p.getByRole('button', { name: 'Rescue', exact: true }).click();
    const d = p.getByRole('dialog');
    await d.getByText('lab@rescue-lab').waitFor(); // the project's key, listed
    await d.getByRole('textbox', { name: 'SSH keys' }).fill(t.env.USER_KEY);
    await d.getByRole('button', { name: 'Rescue', exact: true }).click();
    await p.getByRole('dialog').waitFor({ state: 'detached' });
    mark = await lineCount(p);
    await p.getByRole('log', { name: 'Progress' }).getByText(/active -> rescue_requested/).waitFor();
  }],
  ['the boot scrolls in the console', async (t) => {
    const p = t.pages.a;
    // The rescue kernel's own first lines, on the serial console.
    await until(p, 'the rescue kernel booting', 240000,
      async () => (await linesAfter(p, mark)).some((l) => /Linux version|Run \/init|Freeing unused kernel/.test(l)));
  }],
  ['rescue reached live, fingerprints shown', async (t) => {
    const p = t.pages.a;
    const prog = p.getByRole('log', { name: 'Progress' });
    await prog.getByText(/rescue_booting -> rescue/).waitFor({ timeout: 300000 });
    await prog.getByText('Rescue: done.').waitFor();
    await p.getByLabel('State').getByText('rescue', { exact: true }).waitFor();
    const fps = p.getByRole('list', { name: 'Host key fingerprints' });
    await fps.getByText(/SHA256:/).first().waitFor();
    const r = await fetch(t.url + '/v1/servers/srv1', { headers: { Authorization: 'Bearer ' + t.env.ADMIN_TOKEN } });
    const want = (await r.json()).rescue.ssh_host_keys.map((k) => k.fingerprint);
    const shown = await fps.textContent();
    for (const f of want) t.expect(shown.includes(f), `fingerprint ${f} not shown`);
    await p.getByText(/^ssh root@10\.77\.0\.\d+$/).waitFor();
  }],
  ['type on the rescue console, see the echo', async (t) => {
    const p = t.pages.a;
    const c = p.getByRole('region', { name: 'Console' });
    // Read-only for the grace period after the state settled: wait it
    // out, then take the seat if another had it.
    await until(p, 'the console becomes writable', 90000, async () => {
      if (await c.getByRole('button', { name: 'Take the seat' }).isEnabled())
        await c.getByRole('button', { name: 'Take the seat' }).click();
      return writable(p);
    });
    mark = await lineCount(p);
    await type(p, '\r');
    await until(p, 'a login prompt', 30000, async () => (await linesAfter(p, mark)).some((l) => /login:/.test(l)));
    // login flushes what was typed before it is done: wait for the shell.
    await type(p, 'root\r');
    await until(p, 'a root shell', 30000, async () => (await linesAfter(p, mark)).some((l) => /^rescue:.*# ?$/.test(l)));
    await type(p, `echo portal-${tag}-$((6*7))\r`);
    await until(p, 'the echo of a command', 30000,
      async () => (await linesAfter(p, mark)).some((l) => l.trim() === `portal-${tag}-42`));
  }],
  ['the socket drops: it reconnects and shows the gap', async (t) => {
    const p = t.pages.a;
    const conn = p.getByRole('region', { name: 'Console' }).getByRole('status', { name: 'Connection' });
    mark = await lineCount(p);
    await p.evaluate(() => document.querySelector('[aria-label="Console"]').consoleDrop());
    await conn.filter({ hasText: /Disconnected for .*; retrying in/ }).waitFor();
    await conn.filter({ hasText: 'Connected' }).waitFor();
    await p.getByRole('status', { name: 'Console gap' }).filter({ hasText: /Reconnected: the console was out of reach for \d+s/ }).waitFor();
    await until(p, 'the gap marked', 10000,
      async () => (await linesAfter(p, mark)).some((l) => /console was out of reach for \d+s/.test(l)));
  }],
  ['a second browser takes the seat; the first is told', async (t) => {
    const a = t.pages.a;
    const b = await t.open('b');
    await t.signIn(b, t.env.PROJECT_TOKEN);
    await b.getByRole('link', { name: 'srv1', exact: true }).click();
    const cb = b.getByRole('region', { name: 'Console' });
    await cb.getByRole('status', { name: 'Connection' }).filter({ hasText: 'Connected' }).waitFor();
    await until(b, 'b has the seat', 60000, async () => {
      if (await cb.getByRole('button', { name: 'Take the seat' }).isEnabled())
        await cb.getByRole('button', { name: 'Take the seat' }).click();
      return writable(b);
    });
    await until(a, 'a is told', 20000, async () => (await role(a).textContent()) === 'watching' &&
      /seat|took|taken/i.test(await a.getByRole('alert', { name: 'Console notice' }).textContent()));
    // b types; a watches the same bytes.
    mark = await lineCount(a);
    await type(b, `echo seat-${tag}-$((2*21))\r`);
    await until(a, 'a sees b\'s echo', 30000,
      async () => (await linesAfter(a, mark)).some((l) => l.trim() === `seat-${tag}-42`));
  }],
  ['watch-only cannot type', async (t) => {
    const a = t.pages.a;
    const b = t.pages.b;
    const cb = b.getByRole('region', { name: 'Console' });
    await cb.getByLabel('Watch only').check();
    await cb.getByText('watch only', { exact: true }).waitFor();
    await cb.getByRole('status', { name: 'Connection' }).filter({ hasText: 'Connected' }).waitFor();
    t.expect(!(await cb.getByRole('button', { name: 'Take the seat' }).isEnabled()), 'Take the seat is enabled while watching only');
    mark = await lineCount(a);
    await type(b, `echo watchonly-${tag}\r`);
    // The daemon says it kept them off the console.
    await cb.getByRole('alert', { name: 'Console notice' }).filter({ hasText: /input ignored/ }).waitFor();
    // Then a takes the seat back and types a later line: once its echo
    // is in, the watch-only line would have been too.
    const ca = a.getByRole('region', { name: 'Console' });
    await until(a, 'a writable again', 30000, async () => {
      if (await ca.getByRole('button', { name: 'Take the seat' }).isEnabled())
        await ca.getByRole('button', { name: 'Take the seat' }).click();
      return writable(a);
    });
    await type(a, `echo after-${tag}-$((40+2))\r`);
    await until(a, 'the later line\'s echo', 30000,
      async () => (await linesAfter(a, mark)).some((l) => l.trim() === `after-${tag}-42`));
    const seen = (await linesAfter(a, mark)).join('\n');
    t.expect(!seen.includes(`watchonly-${tag}`), 'the watch-only session typed on the console');
  }],
  ['the menu: SysRq key, NMI after a confirmation', async (t) => {
    const p = t.pages.a;
    const c = p.getByRole('region', { name: 'Console' });
    await c.getByRole('button', { name: 'Console menu' }).click();
    const menu = c.getByRole('group', { name: 'Console menu' });
    mark = await lineCount(p);
    await menu.getByLabel('SysRq key').selectOption('h');
    await menu.getByRole('button', { name: 'Send SysRq' }).click();
    await until(p, "the kernel's SysRq help", 30000,
      async () => (await linesAfter(p, mark)).some((l) => /sysrq: HELP/i.test(l)));
    await menu.getByRole('button', { name: 'NMI', exact: true }).click();
    const d = p.getByRole('dialog', { name: 'Send an NMI to srv1?' });
    await d.getByRole('button', { name: 'NMI', exact: true }).click();
    await p.getByRole('log', { name: 'Events' }).getByText(/console_nmi/).waitFor();
    await p.getByRole('log', { name: 'Events' }).getByText(/console_sysrq/).first().waitFor();
  }],
  ['exit rescue: the local OS boots to its login prompt', async (t) => {
    const p = t.pages.a;
    await t.pages.b.context().close();
    delete t.pages.b;
    mark = await lineCount(p);
    await p.getByRole('button', { name: 'Exit rescue' }).click();
    await p.getByRole('dialog').getByRole('button', { name: 'Exit rescue' }).click();
    const prog = p.getByRole('log', { name: 'Progress' });
    await prog.getByText(/rescue -> exiting/).waitFor();
    await until(p, 'the local OS\'s login prompt', 300000,
      async () => (await linesAfter(p, mark)).some((l) => /login:/.test(l)));
    await prog.getByText(/booting_local -> active/).waitFor({ timeout: 120000 });
    await p.getByLabel('State').getByText('active', { exact: true }).waitFor();
  }],
  ['a recording plays back', async (t) => {
    const p = t.pages.a;
    const c = p.getByRole('region', { name: 'Console' });
    await c.getByText('Recordings', { exact: true }).first().click();
    // b's session ended when its browser closed: its recording is whole.
    const play = c.getByRole('button', { name: /^Play \d+$/ });
    await play.first().waitFor();
    const n = await play.count();
    let found = false;
    for (let i = 0; i < n && !found; i++) {
      await play.nth(i).click();
      const d = p.getByRole('dialog', { name: /^Recording / });
      await d.waitFor();
      const deadline = Date.now() + 20000;
      while (!found && Date.now() < deadline) {
        found = (await d.locator('.xterm-rows').textContent()).includes(`seat-${tag}-42`);
        if (!found) await new Promise((r) => setTimeout(r, 300));
      }
      if (found) await p.screenshot({ path: t.shots + '/recording-playback.png' }).catch(() => {});
      await d.getByRole('button', { name: 'Close' }).click();
    }
    t.expect(found, 'no recording plays back b\'s typing');
  }],
];
