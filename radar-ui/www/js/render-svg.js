// Paints frames as SVG: one element per peer, link, barrio and postcard hop (others' links, which
// are many, share two paths), kept and updated in place (keyed by id) rather than rebuilt, so
// the browser only re-lays out what moved. Elements carry data-peer / data-status / data-pairs /
// data-hop / data-liveness attributes, which the browser test reads.

const NS = 'http://www.w3.org/2000/svg';
/** Barrio regions: padding around members, px. */
const HULL_PAD = 16;

export function createSvgRenderer(container) {
  const svg = el('svg', { class: 'radar-svg', role: 'img', 'aria-label': 'peers on the latency map' });
  const layers = {};
  for (const name of ['rings', 'hulls', 'overlay', 'links', 'route', 'peers', 'names', 'route-labels', 'tracer',
    'barrio-labels', 'flights']) {
    layers[name] = svg.appendChild(el('g', { class: name }));
  }
  container.appendChild(svg);
  const pools = Object.fromEntries(Object.keys(layers).map((k) => [k, new Map()]));

  return {
    kind: 'svg',
    element: svg,
    draw(f) {
      svg.setAttribute('viewBox', `0 0 ${f.w} ${f.h}`);
      drawRings(layers.rings, pools.rings, f);
      sync(layers.hulls, pools.hulls, f.hulls, (h) => h.id, makeHull, updateHull);
      drawOverlay(layers.overlay, pools.overlay, f.overlay);
      sync(layers.links, pools.links, f.links, (l) => l.id, makeLink, updateLink);
      const hops = f.route ? f.route.hops : [];
      sync(layers.route, pools.route, hops, (hop) => hop.n, makeHop, updateHop);
      sync(layers.peers, pools.peers, f.peers, (p) => p.id, makePeer, updatePeer);
      const named = f.peers.filter((p) => p.label);
      sync(layers.names, pools.names, named, (p) => p.id, makeName, updateName);
      sync(layers['route-labels'], pools['route-labels'], hops, (hop) => hop.n, makeHopLabel, updateHopLabel);
      const tracer = f.route?.tracer ? [f.route.tracer] : [];
      sync(layers.tracer, pools.tracer, tracer, () => 0, makeTracer, updateTracer);
      sync(layers['barrio-labels'], pools['barrio-labels'], f.hulls, (h) => h.id, makeLabel, updateLabel);
      sync(layers.flights, pools.flights, f.flights, (_, i) => i, makeFlight, updateFlight);
    },
    destroy() { svg.remove(); },
  };
}

function el(tag, attrs = {}) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** Sets an attribute only when it changed (attribute writes invalidate layout). */
function set(e, k, v) {
  const s = typeof v === 'number' ? v.toFixed(1) : String(v);
  if (e.getAttribute(k) !== s) e.setAttribute(k, s);
}

/** Keeps one element per item in `group`, keyed, creating and removing as needed. */
function sync(group, pool, items, key, make, update) {
  const live = new Set();
  items.forEach((item, i) => {
    const k = key(item, i);
    live.add(k);
    let e = pool.get(k);
    if (!e) {
      e = make(item);
      pool.set(k, e);
      group.appendChild(e);
    }
    update(e, item);
  });
  for (const [k, e] of pool) {
    if (!live.has(k)) {
      e.remove();
      pool.delete(k);
    }
  }
}

function drawRings(group, pool, f) {
  const items = f.rings.map((r, i) => ({ ...r, i }));
  sync(group, pool, items, (r) => r.i, () => {
    const g = el('g');
    g.appendChild(el('circle', { class: 'ring', fill: 'none', stroke: '#2a3766', 'stroke-dasharray': '2 6' }));
    g.appendChild(el('text', { class: 'ring-label', fill: '#56608a', 'font-size': 11 }));
    return g;
  }, (g, r) => {
    const [c, t] = g.children;
    set(c, 'cx', f.me.x); set(c, 'cy', f.me.y); set(c, 'r', r.r);
    set(t, 'x', f.me.x + r.r * 0.707 + 3); set(t, 'y', f.me.y - r.r * 0.707 - 3);
    if (t.textContent !== r.label) t.textContent = r.label;
  });
}

function hullPath(points) {
  if (points.length === 0) return '';
  // One point: a zero-length segment, which the round caps turn into a disc.
  const [first, ...rest] = points;
  const tail = rest.length ? rest.map((p) => `L${p[0].toFixed(1)} ${p[1].toFixed(1)}`).join('') : `L${first[0].toFixed(1)} ${first[1].toFixed(1)}`;
  return `M${first[0].toFixed(1)} ${first[1].toFixed(1)}${tail}Z`;
}

function makeHull(h) {
  // A wide round stroke around the hull pads it into a soft region; the group's opacity keeps
  // fill and stroke from doubling where they overlap.
  const g = el('g', { class: 'hull', opacity: 0.16, 'data-barrio': h.id });
  g.appendChild(el('path', { 'stroke-width': HULL_PAD * 2, 'stroke-linejoin': 'round', 'stroke-linecap': 'round' }));
  return g;
}

function updateHull(g, h) {
  const p = g.firstChild;
  set(p, 'd', hullPath(h.points));
  set(p, 'fill', h.color); set(p, 'stroke', h.color);
}

const LINK_STYLE = {
  connected: { stroke: 'var(--connected)', dash: 'none', width: 1.6, opacity: 0.7 },
  suspected: { stroke: 'var(--suspected)', dash: '6 5', width: 2, opacity: 0.95 },
  disconnected: { stroke: 'var(--disconnected)', dash: '2 5', width: 1.6, opacity: 0.8 },
};

function makeLink(l) {
  return el('line', { class: 'link', 'data-peer': l.id, 'stroke-linecap': 'round' });
}

function updateLink(e, l) {
  const s = LINK_STYLE[l.status] || LINK_STYLE.disconnected;
  set(e, 'x1', l.x1); set(e, 'y1', l.y1); set(e, 'x2', l.x2); set(e, 'y2', l.y2);
  set(e, 'data-status', l.status);
  set(e, 'stroke', s.stroke); set(e, 'stroke-dasharray', s.dash);
  set(e, 'stroke-width', s.width); set(e, 'opacity', s.opacity);
}

/** Others' links: two paths (the neighbours' links, and those farther from the viewer), one
 * segment per link, not one element each: a thousand <line>s halve the frame rate at 500 peers.
 * Each path lists its links in `data-pairs` ("a~b a~b …", in the order of its segments). */
function drawOverlay(group, pool, links) {
  const items = [
    { near: true, width: 1.1, opacity: 0.34, links: links.filter((l) => l.hops <= 1) },
    { near: false, width: 0.8, opacity: 0.2, links: links.filter((l) => !(l.hops <= 1)) },
  ].filter((it) => it.links.length);
  sync(group, pool, items, (it) => (it.near ? 'near' : 'far'), (it) => el('path', {
    class: `overlay-edges ${it.near ? 'near' : 'far'}`, fill: 'none', stroke: '#9aa6d6', 'stroke-linecap': 'round',
    'stroke-width': it.width, opacity: it.opacity,
  }), (e, it) => {
    set(e, 'd', it.links.map((l) => `M${l.x1.toFixed(1)} ${l.y1.toFixed(1)}L${l.x2.toFixed(1)} ${l.y2.toFixed(1)}`).join(''));
    set(e, 'data-pairs', it.links.map((l) => `${l.a}~${l.b}`).join(' '));
  });
}

const ROUTE = '#ffd166';

function makeHop(hop) {
  return el('line', { class: 'route-hop', 'data-hop': hop.n, stroke: ROUTE, 'stroke-width': 3.5,
    'stroke-linecap': 'round', opacity: 0.9 });
}

function updateHop(e, hop) {
  set(e, 'x1', hop.x1); set(e, 'y1', hop.y1); set(e, 'x2', hop.x2); set(e, 'y2', hop.y2);
  set(e, 'data-from', hop.from); set(e, 'data-to', hop.to);
}

function makeHopLabel() {
  const g = el('g', { class: 'route-label' });
  g.appendChild(el('circle', { r: 8, fill: ROUTE, stroke: '#0b1020', 'stroke-width': 1.5 }));
  g.appendChild(el('text', { 'font-size': 11, 'font-weight': 700, 'text-anchor': 'middle', fill: '#0b1020' }));
  return g;
}

function updateHopLabel(g, hop) {
  const [c, t] = g.children;
  set(c, 'cx', hop.mx); set(c, 'cy', hop.my);
  set(t, 'x', hop.mx); set(t, 'y', hop.my + 4);
  const text = String(hop.n);
  if (t.textContent !== text) t.textContent = text;
}

function makeTracer() {
  return el('circle', { class: 'route-tracer', r: 5, fill: '#ffffff', stroke: ROUTE, 'stroke-width': 2 });
}

function updateTracer(e, t) {
  set(e, 'cx', t.x); set(e, 'cy', t.y);
}

function makePeer(p) {
  const e = el('circle', { class: 'peer', 'data-peer': p.id });
  return e;
}

/** How a peer is marked by what the viewer believes about it: offline peers hollow in red,
 * dashed; unreachable ones ringed in amber; online (and unknown) ones plain. */
function peerLook(p) {
  if (p.self) return { fill: 'var(--self)', stroke: p.color, width: 3, dash: 'none' };
  const ring = p.selected ? '#fff' : null;
  if (p.left) return { fill: 'none', stroke: ring || '#6b7399', width: p.selected ? 2 : 1, dash: 'none' };
  if (p.liveness === 'offline') {
    return { fill: 'none', stroke: ring || 'var(--offline)', width: 2, dash: '2 2' };
  }
  if (p.liveness === 'unreachable') {
    return { fill: p.color, stroke: ring || 'var(--unreachable)', width: 2.5, dash: 'none', opacity: 0.55 };
  }
  return { fill: p.color, stroke: ring || '#0b1020', width: p.selected ? 2 : 1, dash: 'none' };
}

function updatePeer(e, p) {
  const look = peerLook(p);
  set(e, 'cx', p.x); set(e, 'cy', p.y);
  set(e, 'r', p.self ? 8 : p.selected ? 7 : 4.5);
  set(e, 'fill', look.fill);
  set(e, 'fill-opacity', look.opacity ?? 1);
  set(e, 'stroke', look.stroke);
  set(e, 'stroke-width', look.width);
  set(e, 'stroke-dasharray', look.dash);
  set(e, 'data-link', p.link || 'none');
  set(e, 'data-liveness', p.liveness || 'unknown');
  set(e, 'class', p.self ? 'peer self' : 'peer');
}

function makeName() {
  return el('text', { class: 'name', 'font-size': 12, fill: '#c9d2f5', 'paint-order': 'stroke', stroke: '#0b1020', 'stroke-width': 3 });
}

function updateName(e, p) {
  set(e, 'x', p.x + 10); set(e, 'y', p.y + 4);
  if (e.textContent !== p.label) e.textContent = p.label;
}

function makeLabel() {
  const g = el('g', { class: 'barrio-label' });
  g.appendChild(el('circle', { r: 3, fill: 'none', 'stroke-width': 1.5 }));
  g.appendChild(el('circle', { class: 'alarm', r: 14, fill: 'none', stroke: '#ff5d73', 'stroke-width': 2.5 }));
  g.appendChild(el('text', { 'font-size': 12, 'font-weight': 600, 'text-anchor': 'middle', 'paint-order': 'stroke', stroke: '#0b1020', 'stroke-width': 3 }));
  return g;
}

function updateLabel(g, h) {
  const [c, ring, t] = g.children;
  // The centroid marker says something only when the barrio has more than one member.
  set(c, 'cx', h.cx); set(c, 'cy', h.cy); set(c, 'stroke', h.count > 1 ? h.color : 'none');
  // A coherence alarm: a red ring on the centroid and a red label, always shown.
  set(g, 'data-barrio', h.id);
  set(g, 'data-alarm', h.alarm ? 'raised' : 'none');
  set(ring, 'cx', h.cx); set(ring, 'cy', h.cy); set(ring, 'visibility', h.alarm ? 'visible' : 'hidden');
  set(t, 'x', h.cx); set(t, 'y', h.top - 22); set(t, 'fill', h.alarm ? '#ff5d73' : h.color);
  const text = h.showLabel || h.alarm ? `${h.alarm ? '⚠ ' : ''}${h.label} · ${h.count}` : '';
  if (t.textContent !== text) t.textContent = text;
}

function makeFlight() {
  const g = el('g', { class: 'flight' });
  g.appendChild(el('line', { stroke: '#9fb4ff', 'stroke-width': 3, 'stroke-linecap': 'round' }));
  g.appendChild(el('circle', { r: 4, fill: '#ffffff' }));
  return g;
}

function updateFlight(g, fl) {
  const [line, dot] = g.children;
  if (fl.kind === 'ripple') {
    line.setAttribute('visibility', 'hidden');
    set(dot, 'cx', fl.x); set(dot, 'cy', fl.y); set(dot, 'r', fl.r);
    set(dot, 'fill', 'none'); set(dot, 'stroke', '#9fb4ff'); set(dot, 'stroke-width', 2);
  } else {
    line.setAttribute('visibility', 'visible');
    set(line, 'x1', fl.tail[0]); set(line, 'y1', fl.tail[1]); set(line, 'x2', fl.head[0]); set(line, 'y2', fl.head[1]);
    set(dot, 'cx', fl.head[0]); set(dot, 'cy', fl.head[1]); set(dot, 'r', 4);
    set(dot, 'fill', '#ffffff'); set(dot, 'stroke', 'none');
  }
  set(g, 'opacity', Math.max(0, Math.min(1, fl.alpha)));
}
