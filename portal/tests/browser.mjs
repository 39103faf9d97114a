// The portal's browser tests: Debian's chromium driven by playwright-core,
// or Debian's firefox-esr driven by puppeteer-core over WebDriver BiDi
// (BROWSER=firefox: Playwright drives only its own patched Firefox).  No
// browser is downloaded.  Run by the qemu-tests cases 071, 075-076:
//
//   [BROWSER=firefox] node portal/tests/browser.mjs SCRIPT URL SHOTS_DIR
//                                                       (env: tokens)
//
// SCRIPT is a file of steps (portal/tests/*.steps.mjs) exporting
// `steps`: [name, async (t) => {...}] pairs run in order; each step ends
// with a screenshot SHOTS_DIR/NN-name.png of every open page, and a failed
// step with FAIL-name.png, its message on stderr and exit 1.  The steps
// find controls by role and accessible name, as a person would: through
// Playwright's getByRole in Chromium, puppeteer's ::-p-aria in Firefox
// (t.aria); t's own helpers work in both.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [script, url, shots] = process.argv.slice(2);
if (!script || !url || !shots) {
  console.error('usage: browser.mjs SCRIPT URL SHOTS_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const all = (await import(pathToFileURL(resolve(script)).href)).steps;
// ONLY=REGEX runs the steps whose names match (while developing a case).
const only = process.env.ONLY ? new RegExp(process.env.ONLY) : null;
const steps = only ? all.filter(([name]) => only.test(name)) : all;

const kind = process.env.BROWSER || 'chromium';
const firefox = kind === 'firefox';
let browser;
if (firefox) {
  const puppeteer = (await import('puppeteer-core')).default;
  browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    // Nothing that phones out (the network is closed; FACTS.md).
    extraPrefsFirefox: {
      'app.update.enabled': false, 'browser.safebrowsing.malware.enabled': false,
      'browser.safebrowsing.phishing.enabled': false, 'network.captive-portal-service.enabled': false,
      'datareporting.policy.dataSubmissionEnabled': false, 'extensions.update.enabled': false,
    },
  });
} else {
  const { chromium } = await import('playwright-core');
  // The flags that work on this machine: no sandbox as root, and nothing
  // that phones out (the network is closed; FACTS.md).
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-dev-shm-usage'],
  });
}
// puppeteer's selector for the element of this role (null: any; Firefox
// gives a password field no textbox role) and accessible name.
const aria = (role, name) => `::-p-aria([name=${JSON.stringify(name)}]${role ? `[role="${role}"]` : ''})`;
// Firefox: the form field of this accessible name (its label has the
// name too), once there.
async function field(page, name) {
  const deadline = Date.now() + 15000;
  for (;;) {
    for (const e of await page.$$(aria(null, name)))
      if (await e.evaluate((x) => x.matches('input, textarea, select'))) return e;
    if (Date.now() > deadline) throw new Error(`no field named ${name}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const t = {
  url,
  shots,
  env: process.env,
  pages: {},
  browser,
  kind,
  aria,
  field,
  // A new browser context (its own cookies: another person) with one page.
  async open(name, opts = {}) {
    const viewport = opts.viewport || { width: 1280, height: 900 };
    let page;
    if (firefox) {
      page = await (await browser.createBrowserContext()).newPage();
      await page.setViewport(viewport);
    } else {
      page = await (await browser.newContext({ viewport, ...opts })).newPage();
    }
    page.setDefaultTimeout(15000);
    page.on('pageerror', (e) => console.error(`[${name}] page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') console.error(`[${name}] console: ${m.text()}`);
    });
    this.pages[name] = page;
    await page.goto(url + '/');
    return page;
  },
  async signIn(page, token) {
    if (firefox) {
      const f = await field(page, 'Token');
      await f.evaluate((x) => (x.value = ''));
      await f.type(token);
      await page.locator(aria('button', 'Sign in')).click();
      await page.locator(aria('heading', 'Servers')).wait();
      return;
    }
    await page.getByLabel('Token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Servers' }).waitFor();
  },
  // fetch from inside the page: what a script on the page could do.
  async fetchIn(page, path, init) {
    return page.evaluate(async ([p, i]) => {
      const r = await fetch(p, i);
      return { status: r.status, body: await r.text() };
    }, [path, init || {}]);
  },
  // What a script on the page can read: not the session cookie (HttpOnly),
  // and the token nowhere (cookies, URL, localStorage, sessionStorage).
  async secretsHidden(page, token) {
    const seen = await page.evaluate(() => ({
      cookie: document.cookie, url: location.href,
      local: JSON.stringify(localStorage), session: JSON.stringify(sessionStorage),
    }));
    this.expect(!seen.cookie.includes('rescued_session'), 'a script can read the session cookie');
    for (const [k, v] of Object.entries(seen))
      this.expect(!v.includes(token), `the token is in ${k}`);
  },
  // The console's text as xterm.js shows it (its buffer, scrollback too).
  async screen(page) {
    return page.evaluate(() => {
      const rows = document.querySelectorAll('[aria-label="Console"] .xterm-rows > div');
      return [...rows].map((r) => r.textContent).join('\n');
    });
  },
  async waitScreen(page, re, ms) {
    const deadline = Date.now() + ms;
    for (;;) {
      const text = await this.screen(page);
      if (re.test(text)) return text;
      if (Date.now() > deadline) throw new Error(`console never showed ${re} in ${ms / 1000} s; it shows:\n${text.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  },
  expect(cond, msg) {
    if (!cond) throw new Error(msg);
  },
};

let n = 0;
let code = 0;
const t0 = Date.now();
for (const [name, fn] of steps) {
  n++;
  const tag = String(n).padStart(2, '0') + '-' + name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
  const s0 = Date.now();
  try {
    await fn(t);
    // The viewport, and the Console region apart (a full-page shot resizes
    // the window, and xterm.js then shows the top of its scrollback).
    for (const [pname, page] of Object.entries(t.pages)) {
      if (page.isClosed()) continue;
      await page.screenshot({ path: join(shots, `${tag}-${pname}.png`) });
      const cshot = join(shots, `${tag}-${pname}-console.png`);
      if (firefox) {
        const c = await page.$('[aria-label="Console"]:has(.xterm)');
        if (c && await c.isVisible()) await c.screenshot({ path: cshot });
        continue;
      }
      const c = page.getByRole('region', { name: 'Console' });
      if (await c.locator('.xterm').isVisible().catch(() => false))
        await c.screenshot({ path: cshot });
    }
    console.log(`ok ${n} ${name} (${((Date.now() - s0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    for (const [pname, page] of Object.entries(t.pages))
      if (!page.isClosed()) await page.screenshot({ path: join(shots, `FAIL-${tag}-${pname}.png`) }).catch(() => {});
    console.error(`FAIL step ${n} ${name}: ${e.message}`);
    code = 1;
    break;
  }
}
await browser.close();
console.log(`${code ? 'failed' : 'passed'}: ${n} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(code);
