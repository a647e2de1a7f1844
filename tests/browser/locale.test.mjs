// A browser in de-AT gets German through the fallback chain de-AT → de (tenant
// override, then built-in German) → tenant default → en.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, launchBrowser, newPage, w, connected, eventually, screenshot } from './lib.mjs';

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

test('browser locale de-AT shows German strings through the fallback chain', async () => {
  // The tenant overrides one string for German (not for de-AT): it must win over the
  // built-in German text; everything else falls back to the built-in German.
  await it.api('PUT', '/v1/admin/templates/widget.greeting/de', { body: 'Servus! Wie können wir helfen?' });
  const page = await newPage(browser, { locale: 'de-AT' });
  await page.goto(it.host.set('/', { snippet: it.snippet }));
  await connected(page);
  const launcher = w(page, 'launcher');
  await eventually('German strings', async () => (await launcher.getAttribute('aria-label')) === 'Chat öffnen');
  await launcher.click();
  assert.equal(await w(page, 'input').getAttribute('placeholder'), 'Ihre Nachricht…');
  assert.equal(await page.locator('chatorical-widget .title').innerText(), 'Schreiben Sie uns');
  assert.equal(await w(page, 'messages').getAttribute('data-greeting'), 'Servus! Wie können wir helfen?');
  // Timestamps in the Austrian format (24-hour clock).
  await w(page, 'input').fill('Grüß Gott!');
  await w(page, 'input').press('Enter');
  const time = page.locator('chatorical-widget li.msg[data-seq] time').first();
  await time.waitFor();
  assert.match(await time.innerText(), /^\d{1,2}:\d{2}$/);
  await screenshot(page, 'widget-open-de-AT');

  // A language nobody translated falls back to English.
  const fr = await newPage(browser, { locale: 'fr-FR' });
  await fr.goto(it.host.set('/fr', { snippet: it.snippet }));
  await connected(fr);
  await eventually('English strings', async () => (await w(fr, 'launcher').getAttribute('aria-label')) === 'Open chat');
  await page.context().close();
  await fr.context().close();
});
