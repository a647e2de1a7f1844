// Shared harness of the browser tests: a real `chatorical serve` process on
// 127.0.0.1, a host page served from another origin (127.0.0.2) that embeds the
// released snippet (with Subresource Integrity), and headless Debian Chromium
// driven by playwright-core. Run through `cargo test --test browser`, which builds
// the binary and passes its path in CHATORICAL_BIN.

import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

import { chromium } from 'playwright-core';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

export const BIN = process.env.CHATORICAL_BIN;
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SHOTS = process.env.CHATORICAL_SCREENSHOTS || path.resolve(here, '../../target/browser-screenshots');
if (!BIN) throw new Error('CHATORICAL_BIN is not set: run these through `cargo test --test browser`');

/** Poll `fn` until it returns a truthy value or `ms` pass. */
export async function eventually(what, fn, ms = 20000, every = 100) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.stack : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A TCP port free on `host` right now. */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * One installation: a data directory (SQLite, master key), a tenant whose widget may
 * be embedded by the host origin, an admin key, the released snippet, and the server
 * process (restartable on the same port and data).
 */
export class Install {
  static async create({ env = {}, slug = 'acme' } = {}) {
    const it = new Install();
    it.dir = await mkdtemp(path.join(os.tmpdir(), 'chatorical-browser-'));
    it.env = env;
    it.port = await freePort('127.0.0.1');
    it.base = `http://127.0.0.1:${it.port}`;
    it.host = await HostPage.start();
    const tenant = await it.cli(['tenants', 'create', '--slug', slug, '--name', 'Acme Inc', '--origin', it.host.origin]);
    it.widgetKey = tenant.widget_key;
    const key = await it.cli(['keys', 'issue', '--tenant', slug, '--scope', 'conversations:write', '--scope', 'settings:write', '--scope', 'templates:write', '--name', 'browser-tests']);
    it.key = key.key;
    // The snippet exactly as released for this tenant (`--tenant` fills in its widget key).
    it.release = await it.cli(['widget', 'release', '--origin', it.base, '--tenant', slug, '--out', path.join(it.dir, 'release')]);
    it.snippet = it.release.snippet;
    if (!it.snippet.includes(`data-widget-key="${it.widgetKey}"`)) throw new Error(`the released snippet lacks the tenant's widget key: ${it.snippet}`);
    await it.start();
    return it;
  }

  envFor() {
    return {
      PATH: process.env.PATH,
      HOME: this.dir,
      CHATORICAL_LOG__FORMAT: 'json',
      CHATORICAL_LOG__FILTER: 'warn',
      // One IP opens every session here.
      CHATORICAL_LIMITS__SESSIONS_PER_IP_PER_MIN: '100000',
      ...this.env,
    };
  }

  async cli(args) {
    const { stdout } = await run(BIN, [...args, '--json', '--data-dir', this.dir], {
      env: this.envFor(),
      cwd: this.dir,
    });
    return JSON.parse(stdout);
  }

  async start() {
    this.log = '';
    this.proc = spawn(BIN, ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dir], {
      env: this.envFor(),
      cwd: this.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d) => {
      this.log += d;
      if (this.log.length > 200000) this.log = this.log.slice(-100000);
    };
    this.proc.stdout.on('data', keep);
    this.proc.stderr.on('data', keep);
    const proc = this.proc;
    await eventually('the server to be ready', async () => {
      if (proc.exitCode !== null) throw new Error(`serve exited with ${proc.exitCode}: ${this.log}`);
      const r = await fetch(`${this.base}/readyz`);
      return r.ok;
    }, 30000);
  }

  /** SIGTERM and wait for the exit (the socket is closed with 1001). */
  async stop() {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  /** The admin API with this tenant's key. */
  async api(method, p, body) {
    const r = await fetch(this.base + p, {
      method,
      headers: { authorization: `Bearer ${this.key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    const json = text ? JSON.parse(text) : null;
    if (!r.ok) throw new Error(`${method} ${p} → ${r.status}: ${text}`);
    return json;
  }

  async conversations() {
    return (await this.api('GET', '/v1/admin/conversations')).conversations;
  }

  /** Every stored message of the tenant's only conversation, in seq order. */
  async storedMessages() {
    const convs = await this.conversations();
    if (convs.length !== 1) throw new Error(`expected one conversation, found ${convs.length}`);
    return (await this.api('GET', `/v1/admin/conversations/${convs[0].id}/messages`)).messages;
  }

  async agentReply(text, author = 'Ana') {
    const convs = await this.conversations();
    if (convs.length !== 1) throw new Error(`expected one conversation, found ${convs.length}`);
    return this.api('POST', `/v1/admin/conversations/${convs[0].id}/messages`, { text, author });
  }

  async close() {
    await this.stop();
    await this.host.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * The tenant's website, on another origin than the chatorical server. Pages are
 * registered by path; each embeds the snippet it is given.
 */
export class HostPage {
  static async start() {
    const hp = new HostPage();
    hp.pages = new Map();
    const port = await freePort('127.0.0.2');
    hp.origin = `http://127.0.0.2:${port}`;
    hp.server = http.createServer((req, res) => {
      const pathname = new URL(req.url, hp.origin).pathname;
      if (pathname === '/favicon.ico') {
        res.writeHead(204);
        res.end();
        return;
      }
      const page = hp.pages.get(pathname);
      if (!page) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(page);
    });
    await new Promise((r) => hp.server.listen(port, '127.0.0.2', r));
    return hp;
  }

  /** A plain shop page with a couple of links before the widget (keyboard tests). */
  set(p, { snippet, css = '', body = '' }) {
    this.pages.set(p, `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme shop</title>
<style>${css}</style>
</head>
<body>
<header><a href="#products">Products</a> <a href="#about">About us</a></header>
<main><h1>Acme shop</h1><p>Everything for your garden.</p>${body}</main>
${snippet}
</body>
</html>`);
    return `${this.origin}${p}`;
  }

  close() {
    return new Promise((r) => this.server.close(r));
  }
}

/** Headless Debian Chromium with a fresh profile (no downloaded browsers). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A page of a fresh browser context; console errors are kept for assertions. */
export async function newPage(browser, { locale = 'en-US', viewport = { width: 1100, height: 760 }, reducedMotion, timezoneId } = {}) {
  const context = await browser.newContext({ locale, viewport, reducedMotion, timezoneId });
  const page = await context.newPage();
  page.consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') page.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => page.consoleErrors.push(String(e)));
  return page;
}

/** The widget's state through its test hook. */
export function widgetState(page) {
  return page.evaluate(() => window.chatorical && window.chatorical.state());
}

/** A locator inside the widget's shadow root (playwright pierces open shadow roots). */
export function w(page, testid) {
  return page.locator(`chatorical-widget [data-testid="chatorical-${testid}"]`);
}

/** Wait until the widget has a live socket. */
export function connected(page, ms = 20000) {
  return eventually('the widget to connect', async () => (await widgetState(page))?.connected, ms);
}

export async function screenshot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** axe-core's source, injected into pages. */
export async function axeSource() {
  const require = createRequire(import.meta.url);
  return readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
}
