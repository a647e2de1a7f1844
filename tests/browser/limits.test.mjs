// Over the visitor's message limit: a clear notice, sending disabled until
// retry_after, then the held message goes out exactly once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, launchBrowser, newPage, widgetState, w, connected, eventually, screenshot } from './lib.mjs';

let it;
let browser;

before(async () => {
  // Six messages per minute: a burst of six, then one every ten seconds.
  it = await Install.create({ env: { CHATORICAL_LIMITS__MESSAGES_PER_VISITOR_PER_MIN: '6' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await it?.close();
});

test('a rate limit shows the notice and disables sending until retry_after', async () => {
  const page = await newPage(browser);
  await page.goto(it.host.set('/', { snippet: it.snippet }));
  await connected(page);
  await w(page, 'launcher').click();
  const input = w(page, 'input');
  const send = w(page, 'send');
  for (let i = 1; i <= 6; i++) {
    await input.fill(`message ${i}`);
    await input.press('Enter');
    await eventually(`message ${i} acknowledged`, async () => (await widgetState(page)).messages.filter((m) => !m.pending).length === i);
  }
  await input.fill('message 7');
  await input.press('Enter');

  const notice = w(page, 'notice');
  await eventually('the limit notice', async () => /too fast/i.test(await notice.innerText()));
  const text = await notice.innerText();
  const secs = Number(/(\d+)\s*s/.exec(text)?.[1]);
  assert.ok(secs >= 1 && secs <= 10, `retry_after in the notice: ${text}`);
  assert.equal(await send.isDisabled(), true, 'send disabled while limited');
  await screenshot(page, 'widget-rate-limited');

  // Trying again while limited sends nothing.
  await input.fill('message 8');
  await input.press('Enter');
  await send.click({ force: true }).catch(() => {});
  assert.equal(await input.inputValue(), 'message 8', 'the text stays in the box');
  assert.equal((await it.storedMessages()).length, 6);

  // After retry_after: enabled again, notice gone, message 7 delivered once.
  await eventually('sending to be enabled again', async () => !(await send.isDisabled()), (secs + 5) * 1000);
  await eventually('the notice to go', async () => !/too fast/i.test(await notice.innerText()));
  await eventually('message 7 to be stored', async () => (await it.storedMessages()).length === 7, 10000);
  const stored = await it.storedMessages();
  assert.deepEqual(stored.map((m) => m.text), [1, 2, 3, 4, 5, 6, 7].map((i) => `message ${i}`));
  await page.context().close();
});
