// The optional "Tell us your name" form and the host page's identify(): the visitor's
// name reaches the server, the message being typed is never lost, and the form is
// accessible.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, launchBrowser, newPage, widgetState, w, connected, eventually, axeSource, screenshot } from './lib.mjs';

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

test('the name form keeps the typed message, says thanks and is remembered', async () => {
  const page = await newPage(browser);
  const url = it.host.set('/identify', { snippet: it.snippet });
  await page.goto(url);
  await connected(page);
  await page.evaluate(() => window.chatorical.open());
  await w(page, 'input').fill('Half-typed question');

  const toggle = w(page, 'identify-toggle');
  assert.equal(await toggle.innerText(), 'Tell us your name');
  await toggle.click();
  await w(page, 'identify-name').waitFor();
  assert.equal(
    await page.evaluate(() => document.querySelector('chatorical-widget').shadowRoot.activeElement?.dataset.testid),
    'chatorical-identify-name',
    'opening the form moves focus to the name field',
  );
  await screenshot(page, 'widget-identify-form');

  // With the form open: no serious accessibility problems (labels, contrast, names).
  await page.addScriptTag({ content: await axeSource() });
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document.querySelector('chatorical-widget'), {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
  assert.deepEqual(violations, []);

  // A bad email is refused in place; the values stay for correcting.
  await w(page, 'identify-name').fill('Ada Lovelace');
  await w(page, 'identify-email').fill('not an email');
  await w(page, 'identify-email').press('Enter');
  await eventually('the failure note', async () => (await w(page, 'identify-note').innerText()).includes('did not work'));
  assert.equal(await w(page, 'identify-name').inputValue(), 'Ada Lovelace');

  await w(page, 'identify-email').fill('ada@example.com');
  await w(page, 'identify-email').press('Enter');
  await eventually('the thanks', async () => (await w(page, 'identify-note').innerText()) === 'Thanks, Ada Lovelace!');
  assert.equal(await w(page, 'identify-toggle').isVisible(), false, 'no form once told');
  assert.equal(await w(page, 'input').inputValue(), 'Half-typed question', 'the typed message is kept');
  assert.equal((await widgetState(page)).messages.length, 0, 'identifying sends no message');

  // The message still goes as usual.
  await w(page, 'send').click();
  await eventually('the message stored', async () => {
    const s = await widgetState(page);
    return s.messages.length === 1 && !s.messages[0].pending;
  });
  assert.equal((await it.storedMessages()).map((m) => m.text).join('|'), 'Half-typed question');

  // Remembered in this browser: after a reload there is no form.
  await page.reload();
  await connected(page);
  await page.evaluate(() => window.chatorical.open());
  await w(page, 'input').waitFor();
  assert.equal(await w(page, 'identify-toggle').isVisible(), false);
  assert.deepEqual(page.consoleErrors, []);
  await page.context().close();
});

test('the host page tells who the visitor is with identify()', async () => {
  const page = await newPage(browser);
  await page.goto(it.host.set('/identify-api', { snippet: it.snippet }));
  // Before the session exists it waits for one.
  const stored = page.evaluate(() => window.chatorical.identify({ name: 'Grace Hopper', email: 'grace@example.com' }));
  assert.equal(await stored, true);
  assert.equal(await page.evaluate(() => window.chatorical.identify({ email: 'nope' })), false);
  assert.equal(await page.evaluate(() => window.chatorical.identify({})), false);
  await page.evaluate(() => window.chatorical.open());
  await w(page, 'input').waitFor();
  assert.equal(await w(page, 'identify-toggle').isVisible(), false);
  await page.context().close();
});
