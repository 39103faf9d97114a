// Case 075: the portal against a rescued on loopback (manual power, no
// guest): sign-in and its cookie, a project seeing its own servers only,
// the list live, a server's page and the Rescue dialog (a key checked and
// refused, the daemon's 409 reason, then a rescue that starts), and the
// refusals: another project's server, a missing CSRF header, a signed-out
// session.  Env: ACME_TOKEN, ADMIN_TOKEN, USER_KEY (a .pub line).
const admin = (t, method, path, body) =>
  fetch(t.url + path, {
    method,
    headers: { Authorization: 'Bearer ' + t.env.ADMIN_TOKEN, 'Content-Type': 'application/json' },
    body: body && JSON.stringify(body),
  });

let cookie = null;

// A click held for 300 ms, as a hand makes it: down, a moment, up, where
// the control was when the press began.
async function press(p, loc) {
  const b = await loc.boundingBox();
  await p.mouse.move(b.x + b.width / 2, b.y + b.height / 2);
  await p.mouse.down();
  await new Promise((r) => setTimeout(r, 300));
  await p.mouse.up();
}

export const steps = [
  ['sign-in page', async (t) => {
    const p = await t.open('acme');
    await p.getByLabel('Token').waitFor();
    t.expect(await p.getByLabel('Token').getAttribute('type') === 'password', 'the token field is not a password field');
    await p.getByRole('button', { name: 'Sign in' }).waitFor();
  }],
  ['wrong token refused', async (t) => {
    const p = t.pages.acme;
    await p.getByLabel('Token').fill('not-a-token');
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('alert').filter({ hasText: 'Wrong token' }).waitFor();
  }],
  ['sign in as a project', async (t) => {
    const p = t.pages.acme;
    await t.signIn(p, t.env.ACME_TOKEN);
    await p.getByRole('link', { name: 'srv1', exact: true }).waitFor();
    await p.getByRole('link', { name: 'srv3', exact: true }).waitFor();
    t.expect(await p.getByRole('link', { name: 'srv2', exact: true }).count() === 0, 'acme sees srv2');
    t.expect(!(await p.content()).includes('srv2'), 'srv2 is named on acme\'s page');
    const cookies = await p.context().cookies();
    const c = cookies.find((x) => x.name === 'rescued_session');
    t.expect(c, 'no session cookie');
    t.expect(c.httpOnly, 'the session cookie is not HttpOnly');
    t.expect(c.sameSite === 'Strict', 'the session cookie is SameSite=' + c.sameSite);
    t.expect(c.expires > Date.now() / 1000, 'the session cookie has no expiry');
    cookie = `${c.name}=${c.value}`;
    await t.secretsHidden(p, t.env.ACME_TOKEN);
  }],
  ['the list is live', async (t) => {
    const p = t.pages.acme;
    await p.evaluate(() => (window.__noReload = true));
    const row = p.getByRole('row').filter({ has: p.getByRole('link', { name: 'srv3', exact: true }) });
    await row.getByText('active').waitFor();
    const r = await admin(t, 'POST', '/v1/servers/srv3/actions', { type: 'rescue', ssh_keys: [t.env.USER_KEY] });
    t.expect(r.status === 202, 'admin rescue of srv3: ' + r.status);
    await row.getByText(/rescue_requested|rebooting/).waitFor();
    t.expect(await p.evaluate(() => window.__noReload === true), 'the page reloaded');
  }],
  ['a server page', async (t) => {
    const p = t.pages.acme;
    await p.getByRole('link', { name: 'srv1', exact: true }).click();
    await p.getByRole('heading', { name: 'srv1' }).waitFor();
    t.expect(await p.getByRole('button', { name: 'Rescue', exact: true }).isEnabled(), 'Rescue is disabled on an active server');
    t.expect(!(await p.getByRole('button', { name: 'Exit rescue' }).isEnabled()), 'Exit rescue is enabled on an active server');
    for (const b of ['Reboot', 'Power on', 'Power off'])
      t.expect(await p.getByRole('button', { name: b, exact: true }).isEnabled(), b + ' is disabled');
    // srv1 has no console here: the region says so (case 076 has one).
    await p.getByRole('region', { name: 'Console' }).getByText(/No console: server srv1 has no console/).waitFor();
    await p.getByRole('log', { name: 'Events' }).waitFor({ state: 'attached' });
  }],
  ['rescue without a key: the daemon says why', async (t) => {
    const p = t.pages.acme;
    await p.getByRole('button', { name: 'Rescue', exact: true }).click();
    const d = p.getByRole('dialog');
    await d.getByText(/none: add a key/).waitFor();
    await d.getByRole('button', { name: 'Rescue', exact: true }).click();
    await p.getByRole('alert').filter({ hasText: /Refused: no SSH key to put in the rescue image/ }).waitFor();
    t.expect(await p.getByRole('dialog').count() === 0, 'the dialog stayed open');
  }],
  ['rescue dialog checks the keys', async (t) => {
    const p = t.pages.acme;
    await p.getByRole('button', { name: 'Rescue', exact: true }).click();
    const d = p.getByRole('dialog');
    await d.getByRole('textbox', { name: 'SSH keys' })
      .fill('ssh-ed25519 AAAAnotakey broken@key\nssh-rsa AAAAnot another@key\nnot a key at all');
    // Pressed as a person does (held a moment): the key check the press
    // sets off must not move the button from under the pointer (case 076
    // once lost its click so).
    await press(p, d.getByRole('button', { name: 'Rescue', exact: true }));
    for (const n of [1, 2, 3]) await d.getByText(new RegExp(`✗ line ${n}`)).waitFor();
    await d.getByText(/Fix or remove the keys/).waitFor();
    t.expect(await p.getByRole('dialog').count() === 1, 'a refused key was sent');
  }],
  ['rescue with a key', async (t) => {
    const p = t.pages.acme;
    const d = p.getByRole('dialog');
    await d.getByRole('textbox', { name: 'SSH keys' }).fill(t.env.USER_KEY);
    await d.getByLabel('Time limit').fill('2h');
    await d.getByRole('button', { name: 'Rescue', exact: true }).click();
    await p.getByRole('dialog').waitFor({ state: 'detached' });
    const prog = p.getByRole('log', { name: 'Progress' });
    await prog.getByText(/\[ +\d+\.\ds\] active -> rescue_requested \(rescue requested\)/).waitFor();
    await prog.getByText(/rescue_requested -> rebooting/).waitFor();
    await p.getByRole('log', { name: 'Events' }).getByText('project:acme').first().waitFor();
    t.expect(!(await p.getByRole('button', { name: 'Reboot', exact: true }).isEnabled()), 'Reboot enabled while busy');
  }],
  ['another project\'s server is not found', async (t) => {
    const p = t.pages.acme;
    await p.goto(t.url + '/#/servers/srv2');
    await p.getByRole('heading', { name: 'Not found' }).waitFor();
    await p.getByRole('alert').filter({ hasText: 'no such server: srv2' }).waitFor();
    const r = await t.fetchIn(p, '/v1/servers/srv2');
    t.expect(r.status === 404, 'GET srv2: ' + r.status);
    const s = JSON.parse((await t.fetchIn(p, '/v1/session')).body);
    const k = await t.fetchIn(p, '/v1/servers/srv2/console/ticket',
      { method: 'POST', headers: { 'X-CSRF-Token': s.csrf_token } });
    t.expect(k.status === 404, 'console ticket of srv2: ' + k.status);
    const e = await t.fetchIn(p, '/v1/servers/srv2/events');
    t.expect(e.status === 404, 'events of srv2: ' + e.status);
  }],
  ['no CSRF header, no change', async (t) => {
    const p = t.pages.acme;
    await p.goto(t.url + '/#/');
    await p.getByRole('heading', { name: 'Servers' }).waitFor();
    const body = JSON.stringify({ type: 'power_off' });
    const r = await t.fetchIn(p, '/v1/servers/srv3/actions',
      { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    t.expect(r.status === 403 && JSON.parse(r.body).code === 'forbidden', 'no CSRF header: ' + r.status + ' ' + r.body);
    const w = await t.fetchIn(p, '/v1/servers/srv3/actions',
      { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': 'guess' }, body });
    t.expect(w.status === 403, 'a wrong CSRF header: ' + w.status);
  }],
  ['narrow screen', async (t) => {
    const p = await t.open('phone', { viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
    await t.signIn(p, t.env.ACME_TOKEN);
    await p.getByRole('link', { name: 'srv1', exact: true }).click();
    await p.getByRole('button', { name: 'Rescue', exact: true }).waitFor();
    const wide = await p.evaluate(() => document.documentElement.scrollWidth);
    t.expect(wide <= 380, `the page is ${wide} px wide on a 375 px screen`);
  }],
  ['sign out', async (t) => {
    const p = t.pages.acme;
    await p.getByRole('button', { name: 'Sign out' }).click();
    await p.getByLabel('Token').waitFor();
    const r = await t.fetchIn(p, '/v1/servers');
    t.expect(r.status === 401, 'after sign-out: ' + r.status);
    // The old cookie, replayed by hand, is dead too.
    const old = await fetch(t.url + '/v1/servers', { headers: { Cookie: cookie } });
    t.expect(old.status === 401, 'the signed-out cookie still works: ' + old.status);
    // The other tab (its own session) goes on.
    const q = await t.fetchIn(t.pages.phone, '/v1/servers');
    t.expect(q.status === 200, 'the phone\'s session ended too: ' + q.status);
  }],
];
