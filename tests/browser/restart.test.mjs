// The server restarts mid-session: the widget reconnects on its own and what the
// visitor typed meanwhile is delivered in order, exactly once; nothing is lost or
// shown twice.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, launchBrowser, newPage, widgetState, w, connected, eventually } from './lib.mjs';

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

async function type(page, text) {
  await w(page, 'input').fill(text);
  await w(page, 'input').press('Enter');
}

test('messages typed while the server is down arrive in order exactly once after it returns', async () => {
  const page = await newPage(browser);
  await page.goto(it.host.set('/', { snippet: it.snippet }));
  await connected(page);
  await w(page, 'launcher').click();
  await type(page, 'before the restart');
  await eventually('the first message to be stored', async () => (await it.storedMessages().catch(() => [])).length === 1);

  await it.stop();
  await eventually('the widget to notice', async () => !(await widgetState(page)).connected);
  await eventually('an offline notice', async () => /reconnecting/i.test(await w(page, 'status').innerText()));
  const offline = ['while down 1', 'while down 2', 'while down 3'];
  for (const text of offline) await type(page, text);
  // Shown at once as pending, and kept across a reload in the offline queue.
  const state = await widgetState(page);
  assert.deepEqual(state.messages.filter((m) => m.pending).map((m) => m.text), offline);
  assert.equal(await w(page, 'messages').locator('li[data-pending="true"]').count(), 3);

  await it.start();
  await eventually('the widget to reconnect and flush', async () => {
    const s = await widgetState(page);
    return s.connected && s.messages.every((m) => !m.pending);
  }, 40000);

  const stored = await it.storedMessages();
  assert.deepEqual(stored.map((m) => m.text), ['before the restart', ...offline]);
  assert.deepEqual(stored.map((m) => m.seq), [1, 2, 3, 4]);

  // An agent reply after the restart arrives once.
  await it.agentReply('Got all three, thanks!');
  await eventually('the reply', async () => (await widgetState(page)).messages.length === 5);
  const texts = await w(page, 'messages').locator('li .bubble').allInnerTexts();
  assert.deepEqual(texts, ['before the restart', ...offline, 'Got all three, thanks!']);
  const seqs = await w(page, 'messages').locator('li').evaluateAll((lis) => lis.map((li) => Number(li.dataset.seq)));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  await page.context().close();
});

test('the offline queue survives a reload while the server is down', async () => {
  const page = await newPage(browser);
  await page.goto(it.host.set('/reload', { snippet: it.snippet }));
  await connected(page);
  await w(page, 'launcher').click();
  await type(page, 'first visit');
  await eventually('stored', async () => (await widgetState(page)).messages.some((m) => m.text === 'first visit' && !m.pending));
  const conv = (await widgetState(page)).conversationId;

  await it.stop();
  await eventually('offline', async () => !(await widgetState(page)).connected);
  await type(page, 'typed offline, then reloaded');
  await page.reload();
  await w(page, 'launcher').waitFor();
  await it.start();
  await eventually('the queued message to be delivered', async () => {
    const s = await widgetState(page);
    return s.connected && s.messages.some((m) => m.text === 'typed offline, then reloaded' && !m.pending);
  }, 40000);
  const msgs = (await it.api('GET', `/v1/admin/conversations/${conv}/messages`)).messages;
  assert.deepEqual(msgs.map((m) => m.text), ['first visit', 'typed offline, then reloaded']);
  await page.context().close();
});
