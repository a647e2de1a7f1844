// The tenant's plan in the widget: over a daily quota the visitor gets a clear
// notice with the reset time in their own time zone, the refused text is kept as
// "not sent" (across a reload too) and goes again only when the visitor presses
// Retry; the open-conversation cap says the agents are busy; a plan without the
// widget hides it; the session's feature flags are on the widget's state.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, launchBrowser, newPage, widgetState, w, connected, eventually, screenshot } from './lib.mjs';

let it;
let browser;
let platformKey;

before(async () => {
  it = await Install.create();
  platformKey = (await it.cli(['keys', 'issue', '--platform', '--scope', 'plans:write', '--scope', 'plans:read', '--name', 'plans'])).key;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await it?.close();
});

/** The admin API with the platform key. */
async function platform(method, p, body) {
  const r = await fetch(it.base + p, {
    method,
    headers: { authorization: `Bearer ${platformKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p} → ${r.status}: ${text}`);
  return JSON.parse(text);
}

/** Put the tenant on a plan `code` with these limits, channels and features. */
async function onPlan(code, { limits = {}, channels = ['widget', 'telegram'], features = {} } = {}) {
  await platform('PUT', `/v1/admin/plans/${code}`, { name: code, limits, channels, features });
  await platform('PUT', '/v1/admin/tenants/acme/plan', { plan: code });
}

/** A page whose `send` frames are counted per client_msg_id. */
async function countingPage(opts) {
  const page = await newPage(browser, opts);
  page.sends = new Map();
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => {
      let frame;
      try { frame = JSON.parse(f.payload); } catch { return; }
      if (frame.type === 'send') page.sends.set(frame.client_msg_id, (page.sends.get(frame.client_msg_id) || 0) + 1);
    });
  });
  return page;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const bubble = (page, text) => page.locator('chatorical-widget [data-testid="chatorical-message"]', { hasText: text });

test('over the messages a day: a notice with the local reset time, the text kept as not sent, nothing stored, no resend until Retry', async () => {
  await onPlan('tiny', { limits: { messages_per_day: 3 }, features: { custom_branding: true, sound: false } });
  const page = await countingPage({ locale: 'en-US', timezoneId: 'America/New_York' });
  const url = it.host.set('/', { snippet: it.snippet });
  await page.goto(url);
  await connected(page);
  assert.deepEqual((await widgetState(page)).features, { custom_branding: true, sound: false }, 'the plan\'s features are on the state');

  await w(page, 'launcher').click();
  const input = w(page, 'input');
  const send = w(page, 'send');
  for (let i = 1; i <= 3; i++) {
    await input.fill(`message ${i}`);
    await input.press('Enter');
    await eventually(`message ${i} acknowledged`, async () => (await widgetState(page)).messages.filter((m) => !m.pending).length === i);
  }

  // The fourth is refused: the notice names the reset (00:00 UTC) in New York time.
  await input.fill('message 4');
  await input.press('Enter');
  const notice = w(page, 'notice');
  await eventually('the quota notice', async () => /not taking more messages today/.test(await notice.innerText()));
  const text = await notice.innerText();
  assert.match(text, /try again after (\w+,? )?[78]:00\s?PM (EST|EDT|GMT-[45])$/, text);

  // Kept and shown as not sent, with a Retry button; never shown as sent.
  const held = (await widgetState(page)).messages.find((m) => m.text === 'message 4');
  assert.ok(held && held.pending && held.held && held.seq == null, JSON.stringify(held));
  assert.match(await bubble(page, 'message 4').innerText(), /not sent/);
  await bubble(page, 'message 4').locator('.retry').waitFor();
  assert.equal((await it.storedMessages()).length, 3, 'nothing stored past the quota');
  await screenshot(page, 'widget-quota');

  // Sending waits until the reset: new text stays in the box.
  assert.equal(await send.isDisabled(), true, 'send disabled over the quota');
  await input.fill('message 5');
  await input.press('Enter');
  assert.equal(await input.inputValue(), 'message 5', 'the text stays in the box');
  assert.equal((await widgetState(page)).messages.length, 4);

  // No resend by itself: one send frame for it, however long we wait.
  await sleep(3000);
  assert.equal(page.sends.get(held.client_msg_id), 1, 'the refused message was sent once');
  assert.equal((await it.storedMessages()).length, 3);

  // A reload keeps it as not sent (the outbox is in localStorage) and sends nothing.
  await input.fill('');
  await page.reload();
  await connected(page);
  await w(page, 'launcher').click();
  await eventually('the held message after the reload', async () => {
    const m = (await widgetState(page)).messages.find((x) => x.client_msg_id === held.client_msg_id);
    return m && m.held && m.text === 'message 4';
  });
  assert.match(await bubble(page, 'message 4').innerText(), /not sent/);
  await sleep(2000);
  assert.equal(page.sends.get(held.client_msg_id), 1, 'not resent after the reload');
  assert.equal((await it.storedMessages()).length, 3);

  // The plan is upgraded; Retry sends it, once, and it is stored.
  await onPlan('tiny', { limits: { messages_per_day: 10 }, features: { custom_branding: true, sound: false } });
  await bubble(page, 'message 4').locator('.retry').click();
  await eventually('message 4 stored', async () => (await it.storedMessages()).length === 4);
  await eventually('message 4 acknowledged', async () => {
    const m = (await widgetState(page)).messages.find((x) => x.text === 'message 4');
    return m && !m.pending && !m.held && m.seq === 4;
  });
  assert.equal(page.sends.get(held.client_msg_id), 2);
  assert.deepEqual((await it.storedMessages()).map((m) => m.text), [1, 2, 3, 4].map((i) => `message ${i}`));
  assert.equal(await notice.innerText(), '', 'no notice once sent');
  assert.deepEqual(page.consoleErrors, []);
  await page.context().close();
});

test('no new conversations today: the German notice with the reset time in Berlin', async () => {
  // The first test's visitor started today's one conversation.
  await onPlan('one-a-day', { limits: { conversation_starts_per_day: 1 } });
  const page = await countingPage({ locale: 'de-DE', timezoneId: 'Europe/Berlin' });
  await page.goto(it.host.set('/de', { snippet: it.snippet }));
  await connected(page);
  await w(page, 'launcher').click();
  await w(page, 'input').fill('Hallo?');
  await w(page, 'input').press('Enter');
  const notice = w(page, 'notice');
  await eventually('the quota notice', async () => /keine neuen Gespr\u00e4che/.test(await notice.innerText()));
  const text = await notice.innerText();
  assert.match(text, /bitte nach (\S+ )?0[12]:00 (MEZ|MESZ|GMT\+[12]|UTC\+[12]) erneut versuchen$/, text);
  assert.match(await bubble(page, 'Hallo?').innerText(), /nicht gesendet/);
  await sleep(2000);
  const { messages } = await widgetState(page);
  assert.equal(messages.length, 1);
  assert.equal(page.sends.get(messages[0].client_msg_id), 1, 'sent once');
  assert.equal((await it.conversations()).length, 1, 'no conversation started');
  await page.context().close();
});

test('all open conversations taken: "busy", and no resend loop although there is no reset time', async () => {
  await onPlan('one-open', { limits: { active_conversations: 1 } });
  const page = await countingPage();
  await page.goto(it.host.set('/busy', { snippet: it.snippet }));
  await connected(page);
  await w(page, 'launcher').click();
  await w(page, 'input').fill('Anyone there?');
  await w(page, 'input').press('Enter');
  const notice = w(page, 'notice');
  await eventually('the busy notice', async () => /agents' conversations are busy/.test(await notice.innerText()));
  assert.equal(await w(page, 'send').isDisabled(), true);
  await sleep(4000);
  const { messages } = await widgetState(page);
  assert.equal(messages.length, 1);
  assert.ok(messages[0].held, JSON.stringify(messages[0]));
  assert.equal(page.sends.get(messages[0].client_msg_id), 1, 'sent once, not every second');
  assert.equal((await it.conversations()).length, 1);
  await page.context().close();
});

test('after a close, a new conversation refused over HTTP: the notice, the message held, one request', async () => {
  // One start left today (the first test's visitor used one).
  await onPlan('two-a-day', { limits: { conversation_starts_per_day: 2 } });
  const page = await countingPage();
  const starts = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/conversations') starts.push(r.url());
  });
  await page.goto(it.host.set('/closed', { snippet: it.snippet }));
  await connected(page);
  await w(page, 'launcher').click();
  await w(page, 'input').fill('first');
  await w(page, 'input').press('Enter');
  const cid = await eventually('the first message acknowledged', async () => {
    const s = await widgetState(page);
    return s.messages.length === 1 && !s.messages[0].pending && s.conversationId;
  });
  await it.api('POST', `/v1/admin/conversations/${cid}/close`);
  await eventually('the closed notice', async () => /was closed/.test(await w(page, 'notice').innerText()));

  await w(page, 'input').fill('second');
  await w(page, 'input').press('Enter');
  await eventually('the quota notice', async () => /not taking new conversations today/.test(await w(page, 'notice').innerText()));
  assert.match(await bubble(page, 'second').innerText(), /not sent/);
  await sleep(3000);
  assert.equal(starts.length, 1, `one POST /v1/conversations: ${starts.length}`);
  const second = (await widgetState(page)).messages.find((m) => m.text === 'second');
  assert.ok(second && second.held, JSON.stringify(second));
  assert.equal(page.sends.get(second.client_msg_id), undefined, 'never sent on the socket');
  assert.equal((await it.conversations()).length, 2, 'no third conversation');
  await page.context().close();
});

test('a plan without the widget: no launcher, no chat, the reason on the console', async () => {
  await onPlan('telegram-only', { channels: ['telegram'] });
  const page = await newPage(browser);
  const warnings = [];
  page.on('console', (m) => {
    if (m.type() === 'warning') warnings.push(m.text());
  });
  await page.goto(it.host.set('/hidden', { snippet: it.snippet }));
  await eventually('the console warning', async () => warnings.length > 0);
  assert.match(warnings[0], /plan/);
  await eventually('the launcher to be hidden', async () => !(await w(page, 'launcher').isVisible()));
  const state = await widgetState(page);
  assert.equal(state.connected, false);
  assert.equal(state.conversationId, null);
  await sleep(1500);
  assert.equal(warnings.length, 1, 'said once, no retries');
  await page.context().close();
});
