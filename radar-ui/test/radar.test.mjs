// The radar page in a real browser against real peers (started by run.sh, described in
// RADAR_NODES): peers on the map, others' links from the overlay's link state, a postcard sent
// from the page around a cut link with its path drawn hop by hop (and in the destination's
// inbox), a link cut through the shim going suspected → disconnected → connected on the page, a
// peer's card with who says what about it, a peer cut off from everyone marked on the map, a
// post from the CLI in the list, the peers converging to one barrio (the engine's: API, CLI,
// metrics and map agree) with a coherence alarm marked and cleared, frames per second with 500
// simulated peers, and screenshots.
// Every wait has a bound.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const run = promisify(execFile);
const nodes = JSON.parse(process.env.RADAR_NODES || '[]');
const shots = process.env.RADAR_SCREENSHOTS || 'target/radar-screenshots';
const bin = process.env.VECINO_BIN;
const [ana, beto, , dani] = nodes;
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

/** GETs JSON from a peer's API. */
async function getJson(node, path) {
  const res = await fetch(`http://${node.api}${path}`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  assert.ok(res.ok, `${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** Polls `check` (async, truthy when done) every `every` ms until `timeout`; throws `what`. */
async function until(what, timeout, check, every = 1000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms: ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** In the page: the links of others drawn, as [a, b] pairs. They share a path or two, which
 * lists them in data-pairs, one per segment of the path (checked). */
function overlayDrawn() {
  return [...document.querySelectorAll('svg path.overlay-edges')].flatMap((e) => {
    const pairs = (e.dataset.pairs || '').split(' ').filter(Boolean).map((p) => p.split('~'));
    const segments = (e.getAttribute('d') || '').match(/M/g)?.length ?? 0;
    if (segments !== pairs.length) throw new Error(`${segments} segments drawn for ${pairs.length} links`);
    return pairs;
  });
}

/** An undirected pair's key. */
const pair = (a, b) => (a < b ? `${a} ${b}` : `${b} ${a}`);

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
  assert.ok(Array.isArray(snap.barrios), 'barrios in the snapshot');
  assert.equal(snap.barrio_cell_ms, undefined, 'no grid');
  const badBarrio = await fetch(`${base}/v1/barrios?id=nope`);
  assert.equal(badBarrio.status, 400);
  assert.match((await badBarrio.json()).error, /bad barrio id/);
  const unknownBarrio = await fetch(`${base}/v1/barrios?id=00000000000000ff`);
  assert.equal(unknownBarrio.status, 404);
  assert.match((await unknownBarrio.json()).error, /unknown barrio/);
  assert.ok(Array.isArray(snap.postcards), 'postcard records in the snapshot');
  const badCards = await fetch(`${base}/v1/radar?postcards=-1`);
  assert.equal(badCards.status, 400);
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

test('the peers converge to one barrio, the engine’s: API, CLI, metrics and map agree', async () => {
  const t0 = Date.now();
  // Every peer heads its own barrio until its coordinate settles, then takes the lowest-ranked
  // head within reach: all four RTTs are within one radius, so one barrio is left (a 30-ms
  // grid in eight dimensions would cut four peers 4–12 ms apart into several).
  const agreed = await until('the four peers name one barrio', 120_000, async () => {
    const answers = await Promise.all(nodes.map((n) => getJson(n, '/v1/barrios')));
    const ids = new Set(answers.map((a) => a.barrio.id));
    const mine = answers[0].barrios;
    const one = ids.size === 1 && !ids.has(null) && mine.length === 1 && mine[0].count === nodes.length;
    return one ? answers[0] : null;
  });
  const id = agreed.barrio.id;
  const b = agreed.barrios[0];
  console.log(`barrios: one barrio ${id} ${b.emoji} ${b.name} after ${((Date.now() - t0) / 1000).toFixed(1)} s, head ${b.head}, ${agreed.barrio.changes} changes at ana`);
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.equal(b.id, id);
  assert.equal(b.own, true);
  assert.deepEqual([...b.members].sort(), nodes.map((n) => n.peer_id).sort());
  assert.ok(b.members.includes(b.head), 'the head is a member');
  assert.equal(b.centroid_ms.length, 8, 'the centroid in the coordinates’ 8 dimensions');
  assert.ok(b.centroid_ms.every(Number.isFinite));
  assert.deepEqual(Object.keys(b.health).sort(), ['links_down_share', 'retransmit_share', 'rtt_ms']);
  console.log(`barrios: centroid ${b.centroid_ms.map((x) => x.toFixed(2)).join(' ')} ms, health ${JSON.stringify(b.health)}`);
  assert.deepEqual(await getJson(ana, `/v1/barrios?id=${id}`), b);
  // Members, status and the snapshot name it too.
  const members = await getJson(ana, '/v1/members');
  for (const m of members.filter((x) => nodes.some((n) => n.peer_id === x.peer_id))) {
    assert.equal(m.barrio, id, JSON.stringify(m));
    assert.equal(m.barrio_name, b.name);
  }
  assert.equal((await getJson(beto, '/v1/status')).barrio, id);
  const snap = await getJson(ana, '/v1/radar');
  assert.equal(snap.self.barrio, id);
  assert.deepEqual(snap.barrios.map((x) => x.id), [id]);
  // The CLI.
  const { stdout } = await run(bin, ['barrios', '--api', ana.api], { timeout: 20_000 });
  assert.ok(stdout.includes(id) && stdout.includes(b.name), stdout);
  console.log(`barrios: vecino barrios →\n${stdout.trimEnd()}`);
  // Metrics.
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, new RegExp(`^vecino_barrio_members ${nodes.length}$`, 'm'));
  assert.match(metrics, /^vecino_barrios_known 1$/m);
  assert.match(metrics, /^vecino_barrio_changes_total \d+$/m);
  // The map: one region and one label, with the four members.
  await page.waitForFunction(([want, n]) => window.radar.state.barrios.size === 1
    && window.radar.state.barrios.has(want)
    && document.querySelector(`g.barrio-label[data-barrio="${want}"] text`)?.textContent.endsWith(`· ${n}`),
  [id, nodes.length], { timeout: 15_000, polling: 200 });
  assert.equal(await page.locator('svg g.hull').count(), 1);
  // A coherence alarm (as the `coherence` event has it): a red ring on the centroid and a line
  // in the alarms banner; garbage is ignored; cleared removes both.
  const raised = { barrio: id, name: b.name, emoji: b.emoji, state: 'raised', d2: 19.2, threshold: 11.3,
    moved: [{ feature: 'links_down_share', z: 1.2 }, { feature: 'rtt_ms', z: 4.21 }] };
  assert.equal(await page.evaluate(() => window.radar.coherence({ barrio: '<b>', state: 'raised' })), false);
  assert.equal(await page.evaluate((ev) => window.radar.coherence(ev), raised), true);
  await page.waitForFunction((want) => document.querySelector(`g.barrio-label[data-barrio="${want}"]`)?.dataset.alarm === 'raised'
    && !document.getElementById('alarms').hidden, id, { timeout: 5000, polling: 100 });
  const line = await page.locator('#alarms .alarm-line').textContent();
  assert.equal(line, `barrio ${b.emoji} ${b.name} incoherent: rtt_ms z=4.2, links_down_share z=1.2`);
  assert.equal(await page.locator('svg g.barrio-label circle.alarm[visibility="visible"]').count(), 1);
  assert.ok(await page.locator('#banner').isHidden(), 'the links banner is its own');
  console.log(`barrios: alarm shown: ${line}`);
  await page.screenshot({ path: `${shots}/radar-coherence-alarm.png` });
  await page.evaluate((ev) => window.radar.coherence({ ...ev, state: 'cleared' }), raised);
  await page.waitForFunction((want) => document.querySelector(`g.barrio-label[data-barrio="${want}"]`)?.dataset.alarm === 'none'
    && document.getElementById('alarms').hidden, id, { timeout: 5000, polling: 100 });
  assert.equal(await page.locator('svg g.barrio-label circle.alarm[visibility="visible"]').count(), 0);
});

test('others’ links from the overlay are drawn, fainter than the viewer’s own', async () => {
  const ids = new Set(nodes.map((n) => n.peer_id));
  const started = Date.now();
  // Link state is published once a peer's set of links has stayed the same for 10 s (and at most
  // every 30 s), and the page asks for the overlay every 10 s: allow a couple of rounds.
  const drawn = await until('the page draws every link of the others that ana’s /v1/overlay holds', 120_000, async () => {
    const { edges } = await getJson(ana, '/v1/overlay');
    const want = new Set(edges.filter((e) => ids.has(e.from) && ids.has(e.to) && e.from !== ana.peer_id
      && e.to !== ana.peer_id && e.from !== e.to).map((e) => pair(e.from, e.to)));
    const have = await page.evaluate(overlayDrawn);
    const haveSet = new Set(have.map(([a, b]) => pair(a, b)));
    return want.size > 0 && [...want].every((k) => haveSet.has(k)) ? have : null;
  });
  console.log(`overlay: ${drawn.length} links of others drawn after ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const others = drawn.filter(([a, b]) => a !== ana.peer_id && b !== ana.peer_id);
  assert.ok(others.length >= 1, 'links between peers other than the viewer, which its own links cannot show');
  assert.equal(new Set(drawn.map(([a, b]) => pair(a, b))).size, drawn.length, 'one line per pair');
  // Fainter than every own link, and not drawn over one.
  const look = await page.evaluate(() => ({
    overlay: [...document.querySelectorAll('svg path.overlay-edges')].map((e) => Number(e.getAttribute('opacity'))),
    own: [...document.querySelectorAll('svg line.link')].map((e) => [e.dataset.peer, Number(e.getAttribute('opacity'))]),
  }));
  assert.ok(look.own.length >= 1);
  assert.ok(Math.max(...look.overlay) < Math.min(...look.own.map(([, o]) => o)), JSON.stringify(look));
  const own = new Set(look.own.map(([p]) => pair(ana.peer_id, p)));
  assert.ok(drawn.every(([a, b]) => !own.has(pair(a, b))), 'an own link is drawn once, as an own link');
});

test('a postcard sent from the page goes around a cut link, lands live in both boxes, and its path is drawn hop by hop', async () => {
  // ana's own link to dani is cut, so the postcard must go through a relay that published a
  // link to dani.
  await until('ana knows a link of another peer to dani', 60_000, async () => {
    const { edges } = await getJson(ana, '/v1/overlay');
    return edges.some((e) => e.to === dani.peer_id && e.from !== ana.peer_id);
  });
  // dani's own page, open before the postcard is sent.
  const other = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  other.on('pageerror', (e) => console.error('page error (dani):', e.message));
  // User content with markup in it: it must come out as text.
  const text = `hola dani <img src=x onerror="window.__pwned=1"> ${Date.now()}`;
  const hasCard = ([box, t, status]) => [...document.querySelectorAll(`#${box} li.pc${status ? `[data-status="${status}"]` : ''}`)]
    .some((li) => li.querySelector('.text')?.textContent === t);
  // Once both pages have their first snapshot, their snapshots are refused: whatever the boxes
  // show after that came from the event stream (or, for the custody record, the POST's answer).
  const blocked = { ana: 0, dani: 0 };
  const isSnapshot = (url) => url.pathname === '/v1/radar';
  const block = (who) => (route) => {
    blocked[who]++;
    return route.abort();
  };
  let record;
  try {
    await other.goto(`http://${dani.api}/`, { timeout: 30_000 });
    await other.waitForFunction((n) => document.body.dataset.ready === '1'
      && document.querySelectorAll('svg circle.peer').length === n, nodes.length, { timeout: 30_000 });
    assert.equal(await other.evaluate(hasCard, ['inbox', text, null]), false);
    await other.route(isSnapshot, block('dani'));
    await page.route(isSnapshot, block('ana'));
    await postJson(ana, '/v1/shim/cut', { peers: [dani.peer_id] });
    try {
      await waitForLink(dani.peer_id, 'suspected', 30_000);
      await page.selectOption('#pc-to', dani.peer_id, { timeout: 5000 });
      await page.fill('#pc-text', text, { timeout: 5000 });
      await page.click('#pc-form button[type="submit"]', { timeout: 5000 });
      // The sent box shows it at once (custody), then delivered once the receipt is back.
      await page.waitForFunction(hasCard, ['sent', text, null], { timeout: 10_000, polling: 100 });
      await page.waitForFunction(hasCard, ['sent', text, 'delivered'], { timeout: 60_000, polling: 200 });
      // And dani's inbox has it, live.
      await other.waitForFunction(hasCard, ['inbox', text, 'received'], { timeout: 30_000, polling: 200 });
      const sent = (await getJson(ana, '/v1/postcards?box=sent&limit=10000')).postcards;
      record = sent.find((r) => r.text === text);
    } finally {
      await postJson(ana, '/v1/shim/restore', {});
      await page.unroute(isSnapshot);
    }
    console.log(`postcard: snapshots refused meanwhile: ana ${blocked.ana}, dani ${blocked.dani}`);
    assert.ok(blocked.ana >= 1 && blocked.dani >= 1, 'the pages did try snapshots (and got none)');
    assert.ok(record, 'the node has the record the page shows');
    assert.equal(record.status, 'delivered');
    const path = record.path;
    assert.equal(path[0], ana.peer_id, JSON.stringify(record));
    assert.equal(path[path.length - 1], dani.peer_id, JSON.stringify(record));
    assert.ok(path.length - 1 >= 2, `the cut link forbade the direct hop: ${JSON.stringify(path)}`);
    for (const p of [page, other]) {
      assert.equal(await p.evaluate(() => window.__pwned), undefined, 'postcard text never runs');
      assert.equal(await p.locator('#postcards img').count(), 0, 'postcard text is shown as text');
    }

    // Select it: one numbered segment per hop, author to destination, and the path in the list.
    await page.locator('#sent li.pc', { hasText: text }).click({ timeout: 5000 });
    const hops = path.length - 1;
    await page.waitForFunction((n) => document.querySelectorAll('svg line.route-hop').length === n, hops,
      { timeout: 5000, polling: 100 });
    const drawn = await page.evaluate(() => [...document.querySelectorAll('svg line.route-hop')]
      .map((e) => ({ n: Number(e.dataset.hop), from: e.dataset.from, to: e.dataset.to })).sort((a, b) => a.n - b.n));
    assert.deepEqual(drawn, path.slice(1).map((to, i) => ({ n: i + 1, from: path[i], to })));
    const labels = await page.evaluate(() => [...document.querySelectorAll('svg .route-label text')].map((t) => t.textContent));
    assert.deepEqual(labels.sort(), path.slice(1).map((_, i) => String(i + 1)).sort());
    const listed = await page.evaluate(() => [...document.querySelectorAll('#sent li.pc.selected .path li')].map((li) => li.dataset.peer));
    assert.deepEqual(listed, path);
    await page.screenshot({ path: `${shots}/radar-postcard-path-1280x800.png` });
    // Selecting it again hides the path.
    await page.locator('#sent li.pc', { hasText: text }).click({ timeout: 5000 });
    await page.waitForFunction(() => document.querySelectorAll('svg line.route-hop').length === 0, null, { timeout: 5000 });

    // On dani's page, the record its node has, and the path its trail names.
    const inbox = (await getJson(dani, '/v1/postcards?box=inbox&limit=10000')).postcards.find((r) => r.text === text);
    assert.ok(inbox, 'in dani’s inbox');
    assert.equal(inbox.peer_id, ana.peer_id);
    assert.equal(inbox.path[0], ana.peer_id, JSON.stringify(inbox));
    assert.equal(inbox.path[inbox.path.length - 1], dani.peer_id, JSON.stringify(inbox));
    await other.locator('#inbox li.pc', { hasText: text }).click({ timeout: 5000 });
    const known = (id) => nodes.some((n) => n.peer_id === id);
    const want = inbox.path.slice(1).map((to, i) => ({ n: i + 1, from: inbox.path[i], to }))
      .filter((hop) => known(hop.from) && known(hop.to));
    assert.ok(want.length >= 2, JSON.stringify(inbox));
    await other.waitForFunction((n) => document.querySelectorAll('svg line.route-hop').length === n, want.length,
      { timeout: 10_000, polling: 100 });
    const drawnThere = await other.evaluate(() => [...document.querySelectorAll('svg line.route-hop')]
      .map((e) => ({ n: Number(e.dataset.hop), from: e.dataset.from, to: e.dataset.to })).sort((a, b) => a.n - b.n));
    assert.deepEqual(drawnThere, want);
  } finally {
    await other.close();
  }
  await waitForLink(dani.peer_id, 'connected', 90_000);
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

test('a peer’s card says what the viewer believes of it and who says what; a cut-off peer is marked on the map', async () => {
  // Opinions go out once a peer's set of links has held 10 s: wait for ana to hold beto's own
  // observation by others.
  const op = await until('ana holds claims about beto from other observers', 90_000, async () => {
    const o = await getJson(ana, `/v1/opinions?peer=${beto.peer_id}`);
    return o.status === 'online' && o.claims.some((c) => !c.observer.self) ? o : null;
  });
  await page.evaluate((id) => window.radar.select(id), beto.peer_id);
  // The card asks the node on selection and with every snapshot: its list follows the API's.
  const observers = (o) => o.claims.map((c) => c.observer.peer_id).sort();
  await page.waitForFunction((n) => document.querySelectorAll('#claims li').length >= n, op.claims.length,
    { timeout: 15_000, polling: 200 });
  const card = await page.evaluate(() => ({
    status: document.querySelector('#details [data-liveness]')?.dataset.liveness,
    claims: [...document.querySelectorAll('#claims li')].map((li) => ({ peer: li.dataset.observer, says: li.dataset.says,
      clout: li.querySelector('.clout')?.textContent, text: li.textContent })),
    dot: document.querySelector(`svg circle.peer[data-peer="${window.radar.state.selected}"]`)?.dataset.liveness,
  }));
  const now = await getJson(ana, `/v1/opinions?peer=${beto.peer_id}`);
  assert.equal(card.status, 'online', JSON.stringify(card));
  assert.equal(card.dot, 'online', 'the map marks beto online');
  assert.deepEqual(card.claims.map((c) => c.peer).sort(), observers(now), JSON.stringify(card));
  for (const c of card.claims) {
    assert.equal(c.says, 'online', JSON.stringify(c));
    assert.match(c.clout, /^\d\.\d{3}$/, 'each observer’s clout here');
  }
  // ana trusts its own eyes as much as the most trusted other observer of beto.
  const own = card.claims.find((c) => c.peer === ana.peer_id);
  const others = card.claims.filter((c) => c.peer !== ana.peer_id).map((c) => Number(c.clout));
  assert.ok(own && own.text.includes('(this peer)') && own.text.includes('most trusted other observer'), JSON.stringify(card));
  assert.equal(Number(own.clout), Math.max(...others), JSON.stringify(card));
  console.log(`card: beto ${card.status}, ${card.claims.length} observers: ${card.claims.map((c) => c.clout).join(' ')}`);

  // dani cut off from everyone (every shim drops its frames both ways): at ana it is no longer
  // online; the map and the card say what ana's API says.
  const cuts = [[ana, [dani]], [beto, [dani]], [nodes[2], [dani]], [dani, [ana, beto, nodes[2]]]];
  const started = Date.now();
  try {
    for (const [at, peers] of cuts) await postJson(at, '/v1/shim/cut', { peers: peers.map((n) => n.peer_id) });
    const gone = await until('ana stops calling dani online', 60_000, async () => {
      const o = await getJson(ana, `/v1/opinions?peer=${dani.peer_id}`);
      return o.status && o.status !== 'online' ? o : null;
    }, 250);
    console.log(`card: dani cut off from everyone → ${gone.status} at ana after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await page.waitForFunction(([id, want]) => document.querySelector(`svg circle.peer[data-peer="${id}"]`)?.dataset.liveness === want,
      [dani.peer_id, gone.status], { timeout: 15_000, polling: 200 });
    await page.evaluate((id) => window.radar.select(id), dani.peer_id);
    await page.waitForFunction(([me, want]) => document.querySelector('#details [data-liveness]')?.dataset.liveness === want
      && document.querySelector(`#claims li[data-observer="${me}"]`)?.dataset.says === 'offline', [ana.peer_id, gone.status],
    { timeout: 15_000, polling: 200 });
    await page.screenshot({ path: `${shots}/radar-peer-${gone.status}-1280x800.png` });
  } finally {
    for (const [at] of cuts) await postJson(at, '/v1/shim/restore', {});
  }
  await waitForLink(dani.peer_id, 'connected', 90_000);
  await until('ana calls dani online again', 60_000, async () => (await getJson(ana, `/v1/opinions?peer=${dani.peer_id}`)).status === 'online');
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

test('a node whose API needs a token: the page is refused without one, and works with ?token=', async () => {
  const eva = JSON.parse(process.env.RADAR_TOKEN_NODE || 'null');
  assert.ok(eva, 'run.sh describes the token node in RADAR_TOKEN_NODE');
  const evaBase = `http://${eva.api}`;
  assert.equal((await fetch(`${evaBase}/v1/radar`)).status, 401);
  const tab = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  tab.on('pageerror', (e) => console.error('page error (eva):', e.message));
  try {
    // No token: the page itself is refused (401, JSON).
    const bare = await tab.goto(`${evaBase}/`, { timeout: 30_000 });
    assert.equal(bare.status(), 401);
    // With ?token=: the page, then its snapshot, overlay and event stream on the cookie.
    const res = await tab.goto(`${evaBase}/?token=${eva.read}`, { timeout: 30_000 });
    assert.equal(res.status(), 200);
    await tab.waitForSelector('body[data-ready="1"]', { timeout: 30_000 });
    await tab.waitForFunction(() => document.querySelectorAll('svg circle.peer.self').length === 1, null,
      { timeout: 30_000, polling: 200 });
    assert.equal(new URL(tab.url()).searchParams.has('token'), false, 'the token left the address bar');
    const cookies = await tab.context().cookies(evaBase);
    const jar = cookies.find((c) => c.name.startsWith('vecino_token_'));
    assert.ok(jar && jar.httpOnly && jar.sameSite === 'Strict', JSON.stringify(cookies));
    assert.equal(await tab.evaluate(() => document.cookie), '', 'the page script cannot read it');
    const statuses = await tab.evaluate(async () => Promise.all(
      ['/v1/radar', '/v1/overlay', '/v1/status'].map(async (p) => (await fetch(p)).status)));
    assert.deepEqual(statuses, [200, 200, 200]);
    await tab.waitForFunction(() => document.getElementById('banner').hidden, null, { timeout: 15_000 });
    // The read token cannot send a postcard: a write is refused with a reason.
    const write = await tab.evaluate(async () => {
      const r = await fetch('/v1/postcards', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: 'nobody', text: 'x' }) });
      return [r.status, (await r.json()).error];
    });
    assert.equal(write[0], 403, String(write[1]));
    await tab.screenshot({ path: `${shots}/radar-token.png` });
  } finally {
    await tab.close();
  }
});

test('frames per second with 500 simulated peers', async () => {
  const demo = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  try {
    // 500 peers: past the canvas threshold (400), the page draws on a canvas by itself.
    await demo.goto(`${base}/?demo=500`, { timeout: 30_000 });
    await demo.waitForFunction(() => window.radar?.renderer() === 'canvas', null, { timeout: 30_000 });
    await demo.waitForTimeout(1500); // past the first layout and font loads
    // The canvas strokes others' links (the demo's overlay) fainter than the viewer's own.
    const painted = await demo.evaluate(() => window.radar.painted());
    assert.ok(painted.overlay.segments >= 100 && painted.links.segments >= 1, JSON.stringify(painted));
    assert.ok(painted.overlay.alpha[1] < painted.links.alpha[0], JSON.stringify(painted));
    // No postcards to send in the demo.
    assert.equal(await demo.isVisible('#pc-form'), false, 'the form is hidden in demo mode');
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
