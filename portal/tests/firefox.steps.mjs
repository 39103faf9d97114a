// Case 071: the portal in Firefox (Debian's firefox-esr through
// puppeteer-core over WebDriver BiDi; BROWSER=firefox browser.mjs), a
// subset of 075 and 076 against a rescued on loopback with a stand-in
// serial port: sign-in (cookie out of a script's reach), a project's own
// servers only, the list live, a server's page changing state live, the
// console pane (replay and live output, typing echoed, read-only while
// the server moves), a narrow screen, and sign-out.  Env: PROJECT_TOKEN
// (project other: srv1, srv3), ADMIN_TOKEN, USER_KEY (a .pub line).
const admin = (t, method, path, body) =>
  fetch(t.url + path, {
    method,
    headers: { Authorization: 'Bearer ' + t.env.ADMIN_TOKEN, 'Content-Type': 'application/json' },
    body: body && JSON.stringify(body),
  });

// Waits for fn (run in the page, with arg) to be true; `what` names it.
async function until(p, what, fn, arg, ms = 15000) {
  try {
    await p.waitForFunction(fn, { timeout: ms, polling: 200 }, arg);
  } catch (e) {
    throw new Error(`${what}: not within ${ms / 1000} s (${e.message.split('\n')[0]})`);
  }
}
// The list row's text of a server (its state cell among it).
const rowText = (p, id) => p.evaluate((i) => document.querySelector(`tr[data-id="${i}"]`)?.textContent || '', id);
const stateText = (p) => p.evaluate(() => document.querySelector('dd[aria-label="State"]')?.textContent || '');

export const steps = [
  ['sign-in page', async (t) => {
    const p = await t.open('p');
    const token = await t.field(p, 'Token');
    t.expect(await token.evaluate((e) => e.type) === 'password', 'the token field is not a password field');
    await p.locator(t.aria('button', 'Sign in')).wait();
  }],
  ['wrong token refused', async (t) => {
    const p = t.pages.p;
    await (await t.field(p, 'Token')).type('not-a-token');
    await p.locator(t.aria('button', 'Sign in')).click();
    await until(p, 'the "Wrong token" alert', () =>
      [...document.querySelectorAll('[role="alert"]')].some((a) => a.textContent.includes('Wrong token')));
  }],
  ['sign in as a project', async (t) => {
    const p = t.pages.p;
    await t.signIn(p, t.env.PROJECT_TOKEN);
    await p.locator(t.aria('link', 'srv1')).wait();
    await p.locator(t.aria('link', 'srv3')).wait();
    t.expect(!(await p.content()).includes('srv2'), "srv2 is named on the project's page");
    await t.secretsHidden(p, t.env.PROJECT_TOKEN);
    const r = await t.fetchIn(p, '/v1/servers/srv2');
    t.expect(r.status === 404, 'GET srv2 from the project\'s session: ' + r.status);
  }],
  ['the list is live', async (t) => {
    const p = t.pages.p;
    await p.evaluate(() => (window.__noReload = true));
    t.expect(/active/.test(await rowText(p, 'srv3')), 'srv3 is not active: ' + await rowText(p, 'srv3'));
    const r = await admin(t, 'POST', '/v1/servers/srv3/actions', { type: 'rescue', ssh_keys: [t.env.USER_KEY] });
    t.expect(r.status === 202, 'admin rescue of srv3: ' + r.status);
    await until(p, 'srv3\'s row to leave active', () =>
      /rescue_requested|rebooting/.test(document.querySelector('tr[data-id="srv3"]')?.textContent || ''));
    t.expect(await p.evaluate(() => window.__noReload === true), 'the page reloaded');
  }],
  ['a server page and its console', async (t) => {
    const p = t.pages.p;
    await p.locator(t.aria('link', 'srv1')).click();
    await until(p, 'the srv1 heading', () => document.querySelector('h1')?.textContent.startsWith('srv1'));
    const enabled = (name) => p.$eval(t.aria('button', name), (b) => !b.disabled);
    t.expect(await enabled('Rescue'), 'Rescue is disabled on an active server');
    t.expect(!(await enabled('Exit rescue')), 'Exit rescue is enabled on an active server');
    // The stand-in serial port ticks twice a second: the attach replays
    // the last screenful (ticks from before the page), then live ones.
    const first = Number((await t.waitScreen(p, /TICK (\d+)/, 15000)).match(/TICK (\d+)/)[1]);
    await t.waitScreen(p, new RegExp(`TICK ${first + 3}\\b`), 15000);
    await until(p, 'the seat', () =>
      document.querySelector('[aria-label="Console"] [aria-label="Seat"]')?.textContent === 'you have the seat');
  }],
  ['typing in the console is echoed', async (t) => {
    const p = t.pages.p;
    await p.focus('[aria-label="Console"] .xterm-helper-textarea');
    await p.keyboard.type('hello-firefox', { delay: 20 });
    // The stand-in port echoes each read apart: a key a line, ECHO:h...
    const typed = () => t.screen(p).then((s) => [...s.matchAll(/ECHO:(.)/g)].map((m) => m[1]).join(''));
    const deadline = Date.now() + 15000;
    while (!(await typed()).includes('hello-firefox')) {
      if (Date.now() > deadline) throw new Error(`the echo spells "${await typed()}", not hello-firefox`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }],
  ['the state changes live, the console goes read-only', async (t) => {
    const p = t.pages.p;
    t.expect(/active/.test(await stateText(p)), 'srv1 is not active: ' + await stateText(p));
    const r = await admin(t, 'POST', '/v1/servers/srv1/actions', { type: 'rescue', ssh_keys: [t.env.USER_KEY] });
    t.expect(r.status === 202, 'admin rescue of srv1: ' + r.status);
    await until(p, 'srv1\'s state on its page to leave active', () =>
      /rescue_requested|rebooting/.test(document.querySelector('dd[aria-label="State"]')?.textContent || ''));
    await until(p, 'the timeline\'s transition', () =>
      /rescue_requested/.test(document.querySelector('[aria-label="Events"]')?.textContent || ''));
    await until(p, 'the read-only badge', () => {
      const b = document.querySelector('[aria-label="Console"] .badge.ro');
      return b && !b.hidden && b.textContent === 'read-only';
    });
    t.expect(!(await p.$eval(t.aria('button', 'Reboot'), (b) => !b.disabled)), 'Reboot enabled while busy');
    t.expect(await p.evaluate(() => window.__noReload === true), 'the page reloaded');
  }],
  ['narrow screen', async (t) => {
    const p = await t.open('phone', { viewport: { width: 375, height: 740 } });
    await t.signIn(p, t.env.PROJECT_TOKEN);
    await p.locator(t.aria('link', 'srv1')).click();
    await p.locator(t.aria('button', 'Rescue')).wait();
    const wide = await p.evaluate(() => document.documentElement.scrollWidth);
    t.expect(wide <= 380, `the page is ${wide} px wide on a 375 px screen`);
  }],
  ['sign out', async (t) => {
    const p = t.pages.p;
    await p.bringToFront(); // behind the phone's page the click timed out
    await p.locator(t.aria('button', 'Sign out')).click();
    await t.field(p, 'Token');
    const r = await t.fetchIn(p, '/v1/servers');
    t.expect(r.status === 401, 'after sign-out: ' + r.status);
  }],
];
