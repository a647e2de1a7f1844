// The released snippet on a tenant's page: SRI, a conversation with an agent, the
// unread badge, timestamps, theming, screenshots.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';

import { Install, launchBrowser, newPage, widgetState, w, connected, eventually, screenshot } from './lib.mjs';

let it;
let browser;

before(async () => {
  it = await Install.create();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await it?.close();
});

test('the snippet with SRI loads from another origin and a conversation works both ways', async () => {
  assert.match(it.snippet, /integrity="sha384-[A-Za-z0-9+/=]+"/);
  assert.match(it.snippet, /crossorigin="anonymous"/);
  assert.match(it.snippet, new RegExp(`src="${it.base}/widget\\.js\\?v=${it.release.version}"`));
  const url = it.host.set('/', { snippet: it.snippet });
  assert.notEqual(new URL(url).origin, new URL(it.base).origin, 'host page and server differ in origin');

  const page = await newPage(browser);
  await page.goto(url);
  await connected(page);
  const launcher = w(page, 'launcher');
  await launcher.waitFor();
  await screenshot(page, 'widget-closed');

  await launcher.click();
  await w(page, 'panel').waitFor();
  // Opening moves focus into the message box.
  assert.equal(await page.evaluate(() => document.querySelector('chatorical-widget').shadowRoot.activeElement?.dataset.testid), 'chatorical-input');
  await w(page, 'input').fill('Hello, does the blue hose come in 25 m?');
  await w(page, 'send').click();

  // Stored on the server, exactly once.
  const stored = await eventually('the message to be stored', async () => {
    const ms = await it.storedMessages().catch(() => []);
    return ms.length === 1 && ms;
  });
  assert.equal(stored[0].text, 'Hello, does the blue hose come in 25 m?');
  assert.equal(stored[0].direction, 'inbound');
  await eventually('the message to be acknowledged', async () => {
    const s = await widgetState(page);
    return s.messages.length === 1 && !s.messages[0].pending && s.messages[0].seq === stored[0].seq;
  });

  // The agent's tool says it is typing: the widget shows it.
  await it.api('POST', `/v1/admin/conversations/${stored[0].conversation_id}/typing`);
  const typing = page.locator('chatorical-widget .typing');
  await typing.waitFor();
  assert.equal(await typing.innerText(), 'Support is typing…');

  // An agent answers through the admin API: it appears live, with author and time.
  await it.agentReply('Yes, 15 m and 25 m.', 'Ana');
  const reply = w(page, 'messages').locator('li[data-direction="outbound"]');
  await reply.waitFor();
  assert.match(await reply.innerText(), /Ana/);
  assert.match(await reply.innerText(), /Yes, 15 m and 25 m\./);
  const times = await w(page, 'messages').locator('time').evaluateAll((ts) => ts.map((t) => [t.getAttribute('datetime'), t.textContent]));
  assert.equal(times.length, 2);
  for (const [iso, shown] of times) {
    assert.ok(!Number.isNaN(Date.parse(iso)), `datetime attribute ${iso}`);
    // Formatted for the browser's locale (en-US: 12-hour clock).
    assert.match(shown, /^\d{1,2}:\d{2}\s?(AM|PM)$/, `a visible time: ${shown}`);
  }
  await screenshot(page, 'widget-open');

  // Closed: new agent messages count on the badge; opening clears it.
  await w(page, 'close').click();
  await w(page, 'panel').waitFor({ state: 'hidden' });
  assert.equal(await w(page, 'badge').isHidden(), true);
  await it.agentReply('We also have 50 m.', 'Ana');
  await it.agentReply('Shall I reserve one?', 'Ana');
  await eventually('the badge to count two', async () => (await w(page, 'badge').innerText()) === '2' && (await w(page, 'badge').isVisible()));
  assert.match(await launcher.getAttribute('aria-label'), /2/);
  await screenshot(page, 'widget-closed-unread');
  await launcher.click();
  await eventually('the badge to clear', () => w(page, 'badge').isHidden());

  // Every message shown once, in seq order, matching the server.
  const all = await it.storedMessages();
  assert.equal(all.length, 4);
  const shown = await w(page, 'messages').locator('li').evaluateAll((lis) => lis.map((li) => Number(li.dataset.seq)));
  assert.deepEqual(shown, all.map((m) => m.seq));
  assert.deepEqual(page.consoleErrors, []);
  await page.context().close();
});

test('the served widget is at most 20 KB gzipped, and the versioned URL is cached for a year', async () => {
  const r = await fetch(it.release.src);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  const bytes = Buffer.from(await r.arrayBuffer());
  assert.equal(bytes.length, it.release.bytes);
  const gz = gzipSync(bytes, { level: 9 }).length;
  console.log(`widget.js: ${bytes.length} bytes, ${gz} bytes gzipped`);
  assert.ok(gz <= 20 * 1024, `widget.js is ${gz} bytes gzipped (limit 20480)`);
  const etag = r.headers.get('etag');
  const again = await fetch(it.release.src, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
});

test('a script whose bytes do not match the integrity hash is refused by the browser', async () => {
  const tampered = it.snippet.replace(/integrity="sha384-[^"]+"/, `integrity="sha384-${Buffer.alloc(48).toString('base64')}"`);
  const url = it.host.set('/tampered', { snippet: tampered });
  const page = await newPage(browser);
  await page.goto(url);
  await page.waitForLoadState('load');
  assert.equal(await page.evaluate(() => typeof window.chatorical), 'undefined');
  assert.equal(await page.locator('chatorical-widget').count(), 0);
  assert.ok(page.consoleErrors.some((e) => /integrity/i.test(e)), `an integrity error: ${page.consoleErrors}`);
  await page.context().close();
});

test("the tenant's colour and corner come from its settings", async () => {
  await it.api('PATCH', '/v1/admin/settings', { accent_color: '#ffd33d', widget_position: 'left' });
  const url = it.host.set('/themed', { snippet: it.snippet });
  const page = await newPage(browser);
  await page.goto(url);
  await connected(page);
  const launcher = w(page, 'launcher');
  await eventually('the theme to apply', async () => {
    const box = await launcher.boundingBox();
    return box && box.x < 100;
  });
  const style = await launcher.evaluate((el) => {
    const cs = getComputedStyle(el);
    return { bg: cs.backgroundColor, fg: cs.color };
  });
  assert.equal(style.bg, 'rgb(255, 211, 61)');
  // A light accent gets dark text (contrast), not white.
  assert.equal(style.fg, 'rgb(31, 35, 40)');
  await launcher.click();
  const panel = await w(page, 'panel').boundingBox();
  assert.ok(panel.x < 100, `panel on the left: ${JSON.stringify(panel)}`);
  await screenshot(page, 'widget-open-themed-left');
  await it.api('PATCH', '/v1/admin/settings', { accent_color: '#2f6feb', widget_position: 'right' });
  await page.context().close();
});
