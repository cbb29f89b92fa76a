// Drives Debian's Chromium (through playwright-core) against a running `sockhub serve`: the demo
// page at / and the dashboard at /dashboard. Run by crates/sockhub-cli/tests/browser.rs, which
// owns the server and asserts on what this script prints:
//
//   STEP <name>            a step starts
//   RESULT {json}          something observed, for the Rust test to check
//   NEED <action> [args]   ask the Rust test to act on the server; it answers one line on stdin
//   PAGEERROR <text>       an uncaught exception in a page (the test fails on any)
//   FAIL <step>: <error>   then exit 1 (screenshots of every page are saved as failure-*.png)
//   DONE
//
// Usage: node demo.mjs --url http://127.0.0.1:PORT --out DIR [--chromium /usr/bin/chromium]
//                      [--scenario demo|api-key] [--key KEY]
// Every wait is bounded; nothing here sleeps for a fixed time.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const BASE = args.url;
const OUT = args.out;
const CHROMIUM = args.chromium || '/usr/bin/chromium';
if (!BASE || !OUT) {
  console.error('usage: node demo.mjs --url http://127.0.0.1:PORT --out DIR');
  process.exit(2);
}
fs.mkdirSync(OUT, { recursive: true });

const WAIT = 15000;           // one expected event
const RECONNECT_WAIT = 30000; // a reconnect after a restart (backoff included)

let step = 'start';
const begin = (name) => { step = name; console.log(`STEP ${name}`); };
const result = (obj) => console.log(`RESULT ${JSON.stringify(obj)}`);

// Answers from the Rust test, one line per NEED.
const replies = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function need(action) {
  console.log(`NEED ${action}`);
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer to NEED ${action}`)), 60000).unref());
  const { value, done } = await Promise.race([replies.next(), timeout]);
  if (done || !value.startsWith('ok')) throw new Error(`NEED ${action} answered ${JSON.stringify(value)}`);
  return value.slice(2).trim();
}

// A fresh profile for every run; removed at the end.
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sockhub-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  ],
  viewport: { width: 960, height: 820 },
});
const pages = {};

async function openPage(name, url, viewport) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  page.on('pageerror', (e) => console.log(`PAGEERROR ${name}: ${e.message}`));
  await page.goto(BASE + url, { timeout: WAIT });
  pages[name] = page;
  return page;
}

const status = (page, state, timeout = WAIT) =>
  page.locator(`#status[data-state="${state}"]`).waitFor({ timeout });

async function sessionOf(page) {
  await status(page, 'open');
  const text = await page.locator('#session').textContent();
  const m = /session (\d+)/.exec(text);
  if (!m) throw new Error(`no session id in ${JSON.stringify(text)}`);
  return m[1];
}

// Waits for a message line containing `text` and returns who the page says sent it.
async function received(page, text, timeout = WAIT) {
  const line = page.locator('li.msg[data-kind="message"]', { hasText: text }).last();
  await line.waitFor({ timeout });
  return {
    from: await line.getAttribute('data-from'),
    who: (await line.locator('.who').textContent()).trim(),
    time: (await line.locator('time').textContent()).trim(),
  };
}

// How many times the page has connected so far.
const connections = (page) => page.locator('li.msg[data-kind="system"]', { hasText: 'connected as session' }).count();

async function reconnected(page, before) {
  await page.waitForFunction(
    (n) => [...document.querySelectorAll('li.msg[data-kind="system"]')]
      .filter((li) => li.textContent.startsWith('connected as session')).length > n,
    before,
    { timeout: RECONNECT_WAIT },
  );
}

async function say(page, text) {
  await page.locator('#message').fill(text);
  await page.locator('#message').press('Enter');     // Enter sends
}

async function join(page, channel) {
  await page.locator('#channel').fill(channel);
  await page.locator('#channel').press('Enter');
  await page.locator('#current-channel', { hasText: `#${channel}` }).waitFor({ timeout: WAIT });
  await page.locator('li.msg[data-kind="system"]', { hasText: `joined #${channel}` }).last().waitFor({ timeout: WAIT });
}

const dashboardNumber = (page, id) =>
  page.locator(`#${id}`).textContent().then((t) => Number(t.replace(/[^\d]/g, '')));

async function dashboardAtLeast(page, id, n) {
  await page.waitForFunction(
    ([id, n]) => Number(document.getElementById(id).textContent.replace(/[^\d]/g, '')) >= n,
    [id, n],
    { timeout: WAIT },
  );
  return dashboardNumber(page, id);
}

async function dashboardTotalAtLeast(page, key, n) {
  await page.waitForFunction(
    ([key, n]) => Number((document.querySelector(`dd[data-key="${key}"]`) || { textContent: '' }).textContent.replace(/[^\d]/g, '')) >= n,
    [key, n],
    { timeout: WAIT },
  );
  return Number((await page.locator(`dd[data-key="${key}"]`).textContent()).replace(/[^\d]/g, ''));
}

const noticeText = async (page) => (await page.locator('#notice p').textContent()).replace(/\s+/g, ' ').trim();

async function shot(page, name) {
  const file = path.join(OUT, name);
  await page.screenshot({ path: file, fullPage: true });
  result({ screenshot: file });
}

// Two pages, a TCP client, the API, a full server, close reasons, a restart; the dashboard.
async function demo() {
  begin('dashboard');
  const dash = await openPage('dashboard', '/dashboard', { width: 1280, height: 900 });
  await status(dash, 'live');
  const before = { ws: await dashboardNumber(dash, 'conn-ws'), total: await dashboardNumber(dash, 'conn-total') };
  result({ dashboard_before: before });

  begin('two pages');
  const a = await openPage('a', '/');
  const b = await openPage('b', '/');
  const sa = await sessionOf(a);
  const sb = await sessionOf(b);
  result({ a_session: sa, b_session: sb });

  begin('join a channel by name');
  await a.locator('#channel').fill('two words');
  await a.locator('#channel').press('Enter');
  const badName = a.locator('li.msg[data-kind="error"]', { hasText: 'two words' });
  await badName.waitFor({ timeout: WAIT });
  result({ bad_channel_error: (await badName.locator('.text').textContent()).trim() });
  await join(a, 'room-7');
  await join(b, 'room-7');
  result({ a_channel: (await a.locator('#current-channel').textContent()).trim() });

  begin('exchange messages');
  await say(a, 'hello from page A');
  const bSaw = await received(b, 'hello from page A');
  await a.locator('li.msg[data-kind="self"]', { hasText: 'hello from page A' }).waitFor({ timeout: WAIT });
  await say(b, 'and hello from page B');
  const aSaw = await received(a, 'and hello from page B');
  result({ b_saw: bSaw, a_saw: aSaw });

  begin('dashboard counts the pages');
  result({ dashboard_ws: await dashboardAtLeast(dash, 'conn-ws', before.ws + 2) });
  // Both joins are confirmed; the dashboard shows them at its next event.
  await dash.waitForFunction(
    () => (document.querySelector('#channels tr[data-channel="room-7"] td.n') || {}).textContent === '2',
    null,
    { timeout: WAIT },
  );
  result({ dashboard_room_subscribers: await dash.locator('#channels tr[data-channel="room-7"] td.n').textContent() });

  begin('a TCP client in lobby');
  await join(a, 'lobby');
  await join(b, 'lobby');
  const tcpSession = await need('tcp-send hello from a TCP client');
  const aSawTcp = await received(a, 'hello from a TCP client');
  const bSawTcp = await received(b, 'hello from a TCP client');
  result({ tcp_session: tcpSession, a_saw_tcp: aSawTcp, b_saw_tcp: bSawTcp });
  result({ dashboard_tcp: await dashboardAtLeast(dash, 'conn-tcp', 1) });

  begin('a publish through the HTTP API');
  const r = await fetch(`${BASE}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ channel: 'lobby', data: 'hello from the HTTP API' }),
  });
  if (!r.ok) throw new Error(`POST /api/publish: ${r.status} ${await r.text()}`);
  result({ a_saw_api: await received(a, 'hello from the HTTP API') });
  await say(b, 'the dashboard shows this traffic');
  await received(a, 'the dashboard shows this traffic');
  // A few more samples, so that the charts have lines to draw.
  await dash.waitForFunction(() => Number(document.body.dataset.updates) >= 5, null, { timeout: WAIT });
  await shot(a, 'demo-a.png');
  await shot(b, 'demo-b.png');
  await shot(dash, 'dashboard.png');

  begin('server full');
  // A, B and the TCP client hold all --max-connections 3 slots: a third page is refused. The
  // browser sees only close 1006; the page asks /admission why.
  const c = await openPage('c', '/');
  await c.locator('#notice[data-kind="retry"]', { hasText: 'Server full' }).waitFor({ timeout: WAIT });
  result({ full_notice: await noticeText(c), full_status: await c.locator('#status').getAttribute('data-state') });
  await shot(c, 'demo-server-full.png');
  await c.close();
  delete pages.c;
  result({ dashboard_refused: await dashboardTotalAtLeast(dash, 'refused_full', 1) });
  await need('tcp-close');
  await dash.waitForFunction(() => document.getElementById('conn-tcp').textContent === '0', null, { timeout: WAIT });

  begin('a message over max-message-size');
  await say(a, 'x'.repeat(4000));
  await status(a, 'closed');
  await a.locator('#notice[data-kind="stop"]').waitFor({ timeout: WAIT });
  result({ too_large_notice: await noticeText(a) });
  await a.locator('li.msg[data-kind="self"][data-failed]').waitFor({ timeout: WAIT });
  result({ too_large_marked_not_delivered: await a.locator('li.msg[data-failed] .text').textContent().then((t) => t.length) });
  await shot(a, 'demo-too-large.png');
  await a.locator('#reconnect-now').click();
  const sa2 = await sessionOf(a);
  result({ a_session_after_reconnect_now: sa2 });

  begin('closed by the server');
  const kick = await fetch(`${BASE}/api/sessions/${sa2}/close`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'kicked by the browser test' }),
  });
  if (!kick.ok) throw new Error(`POST /api/sessions/${sa2}/close: ${kick.status} ${await kick.text()}`);
  await status(a, 'closed');
  await a.locator('#notice[data-kind="stop"]', { hasText: 'Closed by the server' }).waitFor({ timeout: WAIT });
  result({ kicked_notice: await noticeText(a) });
  await a.locator('#reconnect-now').click();
  await sessionOf(a);

  begin('the server restarts');
  const connects = { a: await connections(a), b: await connections(b) };
  await need('restart');
  await a.locator('li.msg[data-kind="system"]', { hasText: 'Server shutting down' }).waitFor({ timeout: WAIT });
  const shutdownLine = (await a.locator('li.msg[data-kind="system"]', { hasText: 'Server shutting down' }).last().textContent()).trim();
  // A new connection on each page (not the old one, not yet seen closing).
  await reconnected(a, connects.a);
  await reconnected(b, connects.b);
  const sa3 = await sessionOf(a);
  const sb3 = await sessionOf(b);
  await say(a, 'back after the restart');
  const bSawAfter = await received(b, 'back after the restart');
  await dash.locator('#status[data-state="live"]').waitFor({ timeout: RECONNECT_WAIT });
  const dashAfter = await dashboardAtLeast(dash, 'conn-ws', 2);
  result({ restart: { shutdown_line: shutdownLine, a_session: sa3, b_session: sb3, b_saw: bSawAfter, dashboard_ws: dashAfter } });
  await shot(a, 'demo-a-reconnected.png');
  await shot(dash, 'dashboard-after-restart.png');

}

// A server with an API key: the dashboard asks for it, then streams; ?key= works and leaves the
// address bar.
async function apiKey() {
  begin('dashboard without the key');
  const dash = await openPage('dashboard', '/dashboard', { width: 1280, height: 720 });
  await status(dash, 'denied');
  await dash.locator('#key-form').waitFor({ state: 'visible', timeout: WAIT });
  result({ denied_status: (await dash.locator('#status').textContent()).trim() });
  await shot(dash, 'dashboard-api-key.png');

  begin('a wrong key');
  await dash.locator('#key').fill('not the key');
  await dash.locator('#key').press('Enter');
  await dash.locator('#key-error', { hasText: 'invalid API key' }).waitFor({ timeout: WAIT });
  result({ wrong_key_error: (await dash.locator('#key-error').textContent()).trim() });

  begin('the key typed in');
  await dash.locator('#key').fill(args.key);
  await dash.locator('#key').press('Enter');
  await status(dash, 'live');
  result({ typed_key_live: await dash.locator('#key-form').isHidden() });

  begin('the key in the URL');
  const other = await openPage('dashboard-url', `/dashboard?key=${encodeURIComponent(args.key)}`);
  await status(other, 'live');
  result({ url_after_key: new URL(other.url()).search });
}

try {
  if (args.scenario === 'api-key') await apiKey(); else await demo();
  console.log('DONE');
} catch (e) {
  console.log(`FAIL ${step}: ${String(e && e.message || e).split('\n')[0]}`);
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: path.join(OUT, `failure-${name}.png`), fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
  process.stdin.destroy();
}
