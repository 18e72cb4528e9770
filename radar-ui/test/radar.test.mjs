// The radar page in a real browser against real peers (started by run.sh, described in
// RADAR_NODES): peers on the map, a link cut through the shim going suspected → disconnected →
// connected on the page, a post from the CLI in the list, frames per second with 500 simulated
// peers, and screenshots. Every wait has a bound.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const run = promisify(execFile);
const nodes = JSON.parse(process.env.RADAR_NODES || '[]');
const shots = process.env.RADAR_SCREENSHOTS || 'target/radar-screenshots';
const bin = process.env.VECINO_BIN;
const [ana, beto] = nodes;
const base = ana ? `http://${ana.api}` : '';

let browser;
let page;

before(async () => {
  assert.ok(nodes.length >= 3, 'run.sh describes the peers in RADAR_NODES');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: 60_000,
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => console.error('page error:', e.message));
});

after(async () => {
  await browser?.close();
});

/** Posts JSON to a peer's API. */
async function postJson(node, path, body) {
  const res = await fetch(`http://${node.api}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  assert.ok(res.ok, `${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** The status the page shows for ana's link to `peerId` (the SVG line's data-status). */
function linkStatus(peerId) {
  return page.evaluate((id) => document.querySelector(`line.link[data-peer="${id}"]`)?.dataset.status ?? null, peerId);
}

async function waitForLink(peerId, status, timeout) {
  await page.waitForFunction(
    ([id, want]) => document.querySelector(`line.link[data-peer="${id}"]`)?.getAttribute('data-status') === want,
    [peerId, status],
    { timeout, polling: 100 },
  );
}

test('the page is served with its content types, and bad input gets a typed error', async () => {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /text\/html/);
  const js = await fetch(`${base}/radar/js/main.js`);
  assert.match(js.headers.get('content-type'), /text\/javascript/);
  const css = await fetch(`${base}/radar/radar.css`);
  assert.match(css.headers.get('content-type'), /text\/css/);
  const missing = await fetch(`${base}/radar/nope.js`);
  assert.equal(missing.status, 404);
  assert.ok((await missing.json()).error);
  const bad = await fetch(`${base}/v1/radar?posts=lots`);
  assert.equal(bad.status, 400);
  assert.ok((await bad.json()).error);
  const snap = await (await fetch(`${base}/v1/radar`)).json();
  assert.equal(snap.self.peer_id, ana.peer_id);
  assert.ok(Array.isArray(snap.barrios) && snap.barrios.length >= 1, 'barrios in the snapshot');
});

test('the map shows every peer, the viewer highlighted', async () => {
  await page.goto(`${base}/`, { timeout: 30_000 });
  await page.waitForSelector('body[data-ready="1"]', { timeout: 30_000 });
  await page.waitForFunction((n) => document.querySelectorAll('svg circle.peer').length === n, nodes.length,
    { timeout: 60_000, polling: 200 });
  assert.equal(await page.locator('svg circle.peer.self').count(), 1);
  assert.equal(await page.locator('svg circle.peer.self').getAttribute('data-peer'), ana.peer_id);
  for (const n of nodes.slice(1)) await waitForLink(n.peer_id, 'connected', 60_000);
  // Let the coordinates settle a little for the picture, then open a peer's card.
  await page.waitForTimeout(3000);
  await page.evaluate((id) => window.radar.select(id), beto.peer_id);
  await page.waitForFunction(() => document.querySelector('#details .name')?.textContent === 'beto', null, { timeout: 5000 });
  await page.screenshot({ path: `${shots}/radar-1280x800.png` });
});

test('a link cut through the shim turns suspected, then disconnected, and heals', async () => {
  const cata = nodes[2];
  await postJson(ana, '/v1/shim/cut', { peers: [cata.peer_id] });
  try {
    await waitForLink(cata.peer_id, 'suspected', 30_000);
    await page.waitForFunction(() => !document.getElementById('banner').hidden, null, { timeout: 5000 });
    assert.match(await page.textContent('#banner'), /suspected/);
    await page.screenshot({ path: `${shots}/radar-suspected-1280x800.png` });
    await waitForLink(cata.peer_id, 'disconnected', 60_000);
  } finally {
    await postJson(ana, '/v1/shim/restore', {});
  }
  await waitForLink(cata.peer_id, 'connected', 90_000);
  assert.equal(await linkStatus(cata.peer_id), 'connected');
  await page.waitForFunction(() => document.getElementById('banner').hidden, null, { timeout: 10_000 });
});

test('a post sent with the CLI appears in the list', async () => {
  const text = `hola from the CLI ${Date.now()}`;
  await run(bin, ['post', 'news', text, '--api', beto.api], { timeout: 20_000 });
  await page.waitForFunction((t) => [...document.querySelectorAll('#posts li .text')].some((e) => e.textContent === t),
    text, { timeout: 30_000, polling: 100 });
});

test('phone width', async () => {
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  try {
    await phone.goto(`${base}/`, { timeout: 30_000 });
    await phone.waitForFunction((n) => document.querySelectorAll('svg circle.peer').length === n, nodes.length,
      { timeout: 30_000 });
    await phone.waitForTimeout(1500);
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no sideways scrolling at 390 px (overflow ${overflow} px)`);
    await phone.screenshot({ path: `${shots}/radar-390-phone.png`, fullPage: true });
  } finally {
    await phone.close();
  }
});

test('frames per second with 500 simulated peers', async () => {
  const demo = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  try {
    // 500 peers: past the canvas threshold (400), the page draws on a canvas by itself.
    await demo.goto(`${base}/?demo=500`, { timeout: 30_000 });
    await demo.waitForFunction(() => window.radar?.renderer() === 'canvas', null, { timeout: 30_000 });
    await demo.waitForTimeout(1500); // past the first layout and font loads
    const fps = await demo.evaluate(() => window.radar.measureFps(4000));
    console.log(`radar fps at 500 peers: ${fps.toFixed(1)}`);
    assert.ok(fps > 0);
    await demo.screenshot({ path: `${shots}/radar-demo500-1280x800.png` });
    // The same 500 forced onto SVG, to say whether the threshold is in the right place.
    await demo.goto(`${base}/?demo=500&renderer=svg`, { timeout: 30_000 });
    await demo.waitForFunction(() => document.querySelectorAll('svg circle.peer').length === 500, null, { timeout: 30_000 });
    await demo.waitForTimeout(1500);
    const fpsSvg = await demo.evaluate(() => window.radar.measureFps(4000));
    console.log(`radar fps at 500 peers on SVG: ${fpsSvg.toFixed(1)}`);
    // Past the canvas threshold the page switches renderer by itself.
    await demo.goto(`${base}/?demo=3000`, { timeout: 30_000 });
    await demo.waitForFunction(() => window.radar?.renderer() === 'canvas', null, { timeout: 30_000 });
    const fps3k = await demo.evaluate(() => window.radar.measureFps(3000));
    console.log(`radar fps at 3000 peers (canvas): ${fps3k.toFixed(1)}`);
    await demo.screenshot({ path: `${shots}/radar-demo3000-canvas-1280x800.png` });
  } finally {
    await demo.close();
  }
});
