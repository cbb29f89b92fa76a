// pusher-js in headless Chromium (through playwright-core) on a page served by sockhub itself:
// tests/browser/pusher/index.html at /static/index.html (`sockhub serve --static-dir`), with
// pusher-js's browser build beside it. Run by crates/sockhub-cli/tests/browser.rs, which owns
// the server and checks what this prints (the same lines as demo.mjs):
//
//   STEP <name> | RESULT {json} | PAGEERROR <text> | FAIL <step>: <error> | DONE
//
// It plays the app's backend: an auth endpoint on loopback (the `pusher` server SDK's
// authorizeChannel; it refuses private-vault with 403), and `trigger` through sockhub's Pusher
// HTTP API. Two pages subscribe to a public and a private channel; triggered events appear on
// both, and a client event typed in one page appears in the other (and not back in its own).
//
// Usage: node pusher.mjs --url http://127.0.0.1:PORT --out DIR --app-id ID --key KEY
//                        --secret SECRET [--chromium /usr/bin/chromium]
// Every wait is bounded; nothing here sleeps for a fixed time.

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

// The `pusher` server SDK lives in tests/pusher's node_modules (scripts/test installs it).
const here = path.dirname(fileURLToPath(import.meta.url));
const PusherServer = createRequire(path.join(here, '../pusher/package.json'))('pusher');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const BASE = args.url;
const OUT = args.out;
const CHROMIUM = args.chromium || '/usr/bin/chromium';
if (!BASE || !OUT || !args.key || !args.secret || !args['app-id']) {
  console.error('usage: node pusher.mjs --url http://127.0.0.1:PORT --out DIR --app-id ID --key KEY --secret SECRET');
  process.exit(2);
}
fs.mkdirSync(OUT, { recursive: true });

const WAIT = 15000; // one expected event

let step = 'start';
const begin = (name) => { step = name; console.log(`STEP ${name}`); };
const result = (obj) => console.log(`RESULT ${JSON.stringify(obj)}`);

const { hostname, port } = new URL(BASE);
const backend = new PusherServer({
  appId: args['app-id'], key: args.key, secret: args.secret, host: hostname, port, useTLS: false,
});

// The app's auth endpoint, on another loopback port: a cross-origin POST from the page
// (pusher-js's ajax transport: socket_id and channel_name, form-encoded), so it answers CORS.
const authRequests = [];
const auth = http.createServer((req, res) => {
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-allow-headers', 'content-type');
  if (req.method === 'OPTIONS') { res.writeHead(204); res.end(); return; }
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const p = new URLSearchParams(body);
    const channel = p.get('channel_name') || '';
    authRequests.push(channel);
    if (channel === 'private-vault') {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not for you' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(backend.authorizeChannel(p.get('socket_id'), channel)));
  });
});
await new Promise((r) => auth.listen(0, '127.0.0.1', r));
const AUTH_URL = `http://127.0.0.1:${auth.address().port}/pusher/auth`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sockhub-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  ],
  viewport: { width: 1100, height: 560 },
});
const pages = {};

async function openPage(name) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`PAGEERROR ${name}: ${e.message}`));
  const query = new URLSearchParams({ key: args.key, auth: AUTH_URL, name });
  const response = await page.goto(`${BASE}/static/index.html?${query}`, { timeout: WAIT });
  pages[name] = page;
  return { page, status: response.status(), contentType: response.headers()['content-type'] };
}

const subState = (page, id) => page.locator(`#${id} .sub`).getAttribute('data-sub');
async function subscribed(page, id, state) {
  await page.locator(`#${id} .sub[data-sub="${state}"]`).waitFor({ timeout: WAIT });
  return (await page.locator(`#${id} .sub`).textContent()).trim();
}

// Waits for an event line in a channel's section and returns its event name and data.
async function received(page, id, event, text) {
  const li = page.locator(`#${id} li[data-event="${event}"]`, { hasText: text }).last();
  await li.waitFor({ timeout: WAIT });
  return { event: await li.getAttribute('data-event'), data: JSON.parse(await li.getAttribute('data-data')) };
}

async function shot(page, name) {
  const file = path.join(OUT, name);
  await page.screenshot({ path: file, fullPage: true });
  result({ screenshot: file });
}

async function run() {
  begin('the page and pusher.min.js come from --static-dir');
  const a = await openPage('A');
  result({ page_status: a.status, page_content_type: a.contentType });
  const js = await fetch(`${BASE}/static/pusher.min.js`);
  result({ js_status: js.status, js_content_type: js.headers.get('content-type') });
  const b = await openPage('B');

  begin('connected, subscribed');
  for (const [name, { page }] of Object.entries({ A: a, B: b })) {
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
    result({ [`${name}_socket`]: (await page.locator('#socket').textContent()).trim() });
    await subscribed(page, 'news', 'ok');
    await subscribed(page, 'room', 'ok');
    result({ [`${name}_vault`]: await subscribed(page, 'vault', 'refused') });
  }
  result({ auth_requests: [...authRequests].sort() });

  begin('trigger on the public channel');
  await backend.trigger('news', 'headline', { text: 'sockhub speaks Pusher' });
  result({ A_news: await received(a.page, 'news', 'headline', 'sockhub speaks Pusher') });
  result({ B_news: await received(b.page, 'news', 'headline', 'sockhub speaks Pusher') });

  begin('trigger on the private channel');
  await backend.trigger('private-room', 'alert', { text: 'for subscribers only', level: 2 });
  result({ A_room: await received(a.page, 'room', 'alert', 'for subscribers only') });
  result({ B_room: await received(b.page, 'room', 'alert', 'for subscribers only') });

  begin('a client event from page A to page B');
  await a.page.locator('#note').fill('typed in page A');
  await a.page.locator('#note').press('Enter');
  await a.page.locator('#room li[data-sent="yes"]', { hasText: 'typed in page A' }).waitFor({ timeout: WAIT });
  result({ B_client_event: await received(b.page, 'room', 'client-note', 'typed in page A') });
  // And back, so that A has certainly had time to receive its own event, had it been echoed.
  await b.page.locator('#note').fill('answered from page B');
  await b.page.locator('#note').press('Enter');
  result({ A_client_event: await received(a.page, 'room', 'client-note', 'answered from page B') });
  result({
    A_echoed: await a.page.locator('#room li[data-event="client-note"]', { hasText: 'typed in page A' }).count(),
    B_echoed: await b.page.locator('#room li[data-event="client-note"]', { hasText: 'answered from page B' }).count(),
  });
  result({ A_vault_after: await subState(a.page, 'vault') });
  await shot(a.page, 'pusher-a.png');
  await shot(b.page, 'pusher-b.png');
}

try {
  await run();
  console.log('DONE');
} catch (e) {
  console.log(`FAIL ${step}: ${String(e && e.message || e).split('\n')[0]}`);
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: path.join(OUT, `failure-pusher-${name}.png`), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await context.close().catch(() => {});
  auth.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
