// The radar page: picks a feed (the live node, or `?demo=N` simulated peers), then paints a
// frame on every animation frame. `?renderer=svg|canvas` forces a renderer; otherwise SVG up
// to CANVAS_FROM peers and canvas past it.

import { applyCoherence, createState, pruneFlights, selectPostcard } from './state.js';
import { Layout } from './layout.js';
import { createSvgRenderer } from './render-svg.js';
import { createCanvasRenderer } from './render-canvas.js';
import { refreshOpinion, startLive } from './feed.js';
import { startDemo } from './demo.js';
import { FpsMeter, measureFps } from './fps.js';
import { renderAlarms, renderBanner, renderBarrios, renderDetails, renderHeader, renderPosts, renderScale } from './panel.js';
import { renderPostcards, startPostcards } from './postcards.js';

/**
 * Past this many peers, one SVG element each costs more than repainting a canvas. Measured in
 * headless chromium on a 2-core machine with 500 moving peers: SVG 22–35 frames/s, canvas
 * 52–56, so the switch comes well before 500.
 */
const CANVAS_FROM = 400;
/** Largest demo. */
const MAX_DEMO = 20000;
/** A tap selects the nearest peer within this many px. */
const HIT_PX = 16;

const params = new URLSearchParams(location.search);
// `?token=` (a node whose API needs a token): the node answered this page with an HttpOnly
// cookie that carries the token on the page's later requests, so it comes out of the address
// bar, where it would be bookmarked, shared or kept in the history.
if (params.has('token')) {
  const url = new URL(location.href);
  url.searchParams.delete('token');
  history.replaceState(null, '', url);
}
const st = createState();
const layout = new Layout();
const meter = new FpsMeter();
const mapEl = document.getElementById('map');
let renderer = null;
let frame = null;
let panelVersion = -1;
let panelAt = 0;
let demoTick = null;

function wantedRenderer() {
  const forced = params.get('renderer');
  if (forced === 'svg' || forced === 'canvas') return forced;
  return st.peers.size > CANVAS_FROM ? 'canvas' : 'svg';
}

function ensureRenderer() {
  const want = wantedRenderer();
  if (renderer?.kind === want) return;
  renderer?.destroy();
  renderer = want === 'canvas' ? createCanvasRenderer(mapEl) : createSvgRenderer(mapEl);
}

function loop(now) {
  meter.frame(now);
  if (demoTick) demoTick(now);
  pruneFlights(st, now);
  ensureRenderer();
  frame = layout.frame(st, mapEl.clientWidth || 1, mapEl.clientHeight || 1, now);
  renderer.draw(frame);
  // Text panels: on change, and once a second for ages and the fps counter.
  if (st.version !== panelVersion || now - panelAt > 1000) {
    if (st.version !== panelVersion) {
      renderBarrios(st);
      renderAlarms(st);
      renderPosts(st);
      renderPostcards(st);
    }
    panelVersion = st.version;
    panelAt = now;
    renderHeader(st, meter.current);
    renderBanner(st);
    renderDetails(st, now);
    renderScale(frame);
    if (st.selfId) document.body.dataset.ready = '1';
  }
  requestAnimationFrame(loop);
}

/** Selects the peer nearest the tap, or clears the selection. */
function onTap(ev) {
  if (!frame) return;
  const box = mapEl.getBoundingClientRect();
  const x = ev.clientX - box.left;
  const y = ev.clientY - box.top;
  let best = null;
  let bestD = HIT_PX;
  for (const p of frame.peers) {
    const d = Math.hypot(p.x - x, p.y - y);
    if (d < bestD) [best, bestD] = [p.id, d];
  }
  select(best);
}

function select(id) {
  if (st.selected !== id) st.opinion = null;
  st.selected = id;
  st.version++;
  if (id && !demoTick) refreshOpinion(st);
}

function start() {
  const demo = Number.parseInt(params.get('demo') || '', 10);
  if (Number.isFinite(demo) && demo > 0) {
    demoTick = startDemo(st, Math.min(demo, MAX_DEMO));
  } else {
    startLive(st, () => {});
  }
  startPostcards(st);
  mapEl.addEventListener('click', onTap);
  // For the browser test and for curious operators in the console.
  window.radar = { state: st, select, selectPostcard: (key) => selectPostcard(st, key), measureFps,
    coherence: (ev) => applyCoherence(st, ev),
    renderer: () => renderer?.kind, painted: () => renderer?.painted ?? null, frame: () => frame };
  requestAnimationFrame(loop);
}

start();
