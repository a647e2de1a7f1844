// Issue 9 item 9: the released snippet on a page whose origin the tenant does NOT
// allow. The widget must read the server's 403 `origin_not_allowed` (not a CORS
// network error), show "Chat is unavailable right now.", say once on the console which
// origin to allow, and stop calling the server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, HostPage, launchBrowser, newPage, w, eventually, screenshot } from './lib.mjs';

let it;
let browser;
let stranger;

before(async () => {
  it = await Install.create();
  // Another origin (another port on 127.0.0.2) that is not among the tenant's origins.
  stranger = await HostPage.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stranger?.close();
  await it?.close();
});

test('on a page of an origin the tenant does not allow the widget gives up, says why once, and goes quiet', async () => {
  assert.notEqual(stranger.origin, it.host.origin);
  const page = await newPage(browser);
  const warnings = [];
  page.on('console', (m) => {
    if (m.type() === 'warning') warnings.push(m.text());
  });
  const requests = [];
  const server = new URL(it.base).origin;
  page.on('request', (r) => {
    if (new URL(r.url()).origin === server) requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });

  await page.goto(stranger.set('/', { snippet: it.snippet }));
  await w(page, 'launcher').click();
  const status = w(page, 'status');
  await eventually('the unavailable state', async () => (await status.innerText()) === 'Chat is unavailable right now.', 15000);
  await screenshot(page, 'widget-origin-not-allowed');

  // No retries: nothing more reaches the server (the retry backoff starts at 0.5 s).
  const seen = requests.length;
  await new Promise((r) => setTimeout(r, 6000));
  assert.deepEqual(requests.slice(seen), [], 'no requests after giving up');
  assert.equal(requests.filter((r) => r === 'POST /v1/widget/session').length, 1, `one session attempt: ${requests.join(', ')}`);
  assert.equal(await status.innerText(), 'Chat is unavailable right now.');

  // Exactly one warning, naming the origin to allow.
  assert.equal(warnings.length, 1, `one console warning: ${JSON.stringify(warnings)}`);
  assert.ok(warnings[0].includes(stranger.origin), warnings[0]);
  assert.match(warnings[0], /allowed_origins/);

  // Sending queues nothing to the server either.
  await w(page, 'input').fill('hello?');
  await w(page, 'input').press('Enter');
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(requests.slice(seen), [], 'sending does not reconnect');
  assert.equal(warnings.length, 1);
  await page.context().close();

  // The same snippet on the tenant's own page still works.
  const own = await newPage(browser);
  await own.goto(it.host.set('/', { snippet: it.snippet }));
  await eventually('the widget to connect on an allowed origin', async () => (await own.evaluate(() => window.chatorical?.state().connected)));
  await own.context().close();
});
