// A host page whose stylesheet tries to restyle everything must not change the widget.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Install, launchBrowser, newPage, w, connected, screenshot } from './lib.mjs';

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

const HOSTILE = `
* { all: unset !important; }
*, *::before, *::after { font-family: "Comic Sans MS", cursive !important; font-size: 31px !important;
  color: #f0f !important; background: #0f0 !important; line-height: 3 !important; letter-spacing: 4px !important;
  border: 7px dashed red !important; padding: 13px !important; margin: 9px !important; box-sizing: content-box !important;
  text-transform: uppercase !important; opacity: .7 !important; filter: blur(1px) !important; }
html, body, div, section, button, textarea, ul, li, p, h2, span, time, form, label, header { display: block !important; }
button { width: 400px !important; height: 10px !important; }
[hidden] { display: block !important; }
[data-testid] { visibility: hidden !important; }
body > * { position: static !important; transform: rotate(3deg) !important; }
textarea { direction: rtl !important; }
`;

// Layout and look of the widget's parts, from inside its shadow root.
async function measure(page) {
  return page.evaluate(() => {
    const host = document.querySelector('chatorical-widget');
    const root = host.shadowRoot;
    const props = ['display', 'position', 'width', 'height', 'color', 'background-color', 'font-family', 'font-size',
      'line-height', 'letter-spacing', 'border-top-width', 'border-top-style', 'padding-top', 'margin-top', 'opacity',
      'filter', 'text-transform', 'visibility', 'direction', 'transform', 'border-radius'];
    const parts = {};
    for (const id of ['launcher', 'panel', 'messages', 'input', 'send', 'close', 'badge', 'notice', 'status']) {
      const el = root.querySelector(`[data-testid="chatorical-${id}"]`);
      const cs = getComputedStyle(el);
      const r = el.getBoundingClientRect();
      parts[id] = {
        rect: [Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)],
        ...Object.fromEntries(props.map((p) => [p, cs.getPropertyValue(p)])),
      };
    }
    for (const sel of ['.head', '.title', 'li.msg .bubble', 'li.msg time']) {
      const el = root.querySelector(sel);
      if (!el) continue;
      const cs = getComputedStyle(el);
      parts[sel] = Object.fromEntries(props.map((p) => [p, cs.getPropertyValue(p)]));
    }
    const hr = host.getBoundingClientRect();
    parts.host = { rect: [Math.round(hr.x), Math.round(hr.y), Math.round(hr.width), Math.round(hr.height)] };
    return parts;
  });
}

async function openWithAMessage(page, url) {
  await page.goto(url);
  await connected(page);
  await page.evaluate(() => window.chatorical.open());
  await w(page, 'input').fill('Hostile page test');
  await w(page, 'send').click();
  await page.locator('chatorical-widget li.msg[data-seq]').first().waitFor();
}

test('hostile page CSS does not reach the widget', async () => {
  const clean = await newPage(browser);
  await openWithAMessage(clean, it.host.set('/clean', { snippet: it.snippet }));
  const expected = await measure(clean);

  const hostile = await newPage(browser);
  await openWithAMessage(hostile, it.host.set('/hostile', { snippet: it.snippet, css: HOSTILE }));
  // The page itself is visibly wrecked…
  const bodyFont = await hostile.evaluate(() => getComputedStyle(document.body).fontFamily);
  assert.match(bodyFont, /Comic Sans/);
  await screenshot(hostile, 'widget-open-hostile-css');
  // …the widget is exactly as on a clean page.
  const actual = await measure(hostile);
  assert.deepEqual(actual, expected);
  await clean.context().close();
  await hostile.context().close();
});
