// Accessibility: axe-core finds no serious or critical violations with the widget
// open, and a keyboard-only visitor can open the chat, send and close it again.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, launchBrowser, newPage, widgetState, w, connected, eventually, axeSource } from './lib.mjs';

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

async function axe(page) {
  await page.addScriptTag({ content: await axeSource() });
  return page.evaluate(async () => {
    const r = await window.axe.run(document.querySelector('chatorical-widget'), {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
}

function focused(page) {
  return page.evaluate(() => {
    const a = document.activeElement;
    if (a && a.tagName === 'CHATORICAL-WIDGET') return a.shadowRoot.activeElement?.dataset.testid ?? 'widget';
    return a ? a.tagName.toLowerCase() : null;
  });
}

test('axe-core reports no serious or critical violations with the widget open', async () => {
  const page = await newPage(browser);
  await page.goto(it.host.set('/', { snippet: it.snippet }));
  await connected(page);
  await page.evaluate(() => window.chatorical.open());
  await w(page, 'input').fill('Is this accessible?');
  await w(page, 'send').click();
  await it.agentReply('It is checked by axe-core.').catch(async () => {
    await eventually('a conversation', async () => (await it.conversations()).length === 1);
    return it.agentReply('It is checked by axe-core.');
  });
  await eventually('the reply', async () => (await widgetState(page)).messages.length === 2);
  const violations = await axe(page);
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], JSON.stringify(violations, null, 2));
  // Closed too (launcher and badge).
  await page.evaluate(() => window.chatorical.close());
  await it.agentReply('One more.');
  await eventually('the badge', () => w(page, 'badge').isVisible());
  const closed = (await axe(page)).filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(closed, []);
  await page.context().close();
});

test('keyboard only: tab to the launcher, open, send with Enter, newline with Shift+Enter, close with Escape', async () => {
  const page = await newPage(browser);
  await page.goto(it.host.set('/keyboard', { snippet: it.snippet }));
  await connected(page);
  // The page's own links come first, then the launcher.
  let hops = 0;
  while ((await focused(page)) !== 'chatorical-launcher') {
    await page.keyboard.press('Tab');
    if (++hops > 10) assert.fail(`the launcher is not reachable by Tab; focus is on ${await focused(page)}`);
  }
  await page.keyboard.press('Enter');
  await w(page, 'panel').waitFor();
  assert.equal(await focused(page), 'chatorical-input', 'opening moves focus to the message box');
  assert.equal(await w(page, 'launcher').getAttribute('aria-expanded'), 'true');

  await page.keyboard.type('first line');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('second line');
  await page.keyboard.press('Enter');
  await eventually('the two-line message to be sent', async () => {
    const s = await widgetState(page);
    return s.messages.length === 1 && !s.messages[0].pending && s.messages[0];
  });
  const msg = (await widgetState(page)).messages[0];
  assert.equal(msg.text, 'first line\nsecond line');
  assert.equal(await w(page, 'input').inputValue(), '');

  // The live region announces new messages: it is the message list itself.
  assert.equal(await w(page, 'messages').getAttribute('aria-live'), 'polite');

  await page.keyboard.press('Escape');
  await w(page, 'panel').waitFor({ state: 'hidden' });
  assert.equal(await focused(page), 'chatorical-launcher', 'closing returns focus to the launcher');
  assert.equal(await w(page, 'launcher').getAttribute('aria-expanded'), 'false');
  await page.context().close();
});

test('reduced motion: no transitions or animations when the visitor asks for none', async () => {
  const page = await newPage(browser, { reducedMotion: 'reduce' });
  await page.goto(it.host.set('/motion', { snippet: it.snippet }));
  await connected(page);
  await page.evaluate(() => window.chatorical.open());
  const moving = await page.evaluate(() => {
    const root = document.querySelector('chatorical-widget').shadowRoot;
    return [...root.querySelectorAll('*')]
      .map((el) => [el.className || el.tagName, getComputedStyle(el)])
      .filter(([, cs]) => parseFloat(cs.transitionDuration) > 0 || cs.animationName !== 'none')
      .map(([name]) => String(name));
  });
  assert.deepEqual(moving, []);
  await page.context().close();
});
