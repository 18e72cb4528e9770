// From state to a frame in screen pixels: where each peer, link, overlay link, barrio, ring,
// post in flight and the selected postcard's path is drawn this frame. The renderers (SVG,
// canvas) only paint frames.
//
// The viewer sits at the centre, as on a radar; rings mark distances in ms on the projected
// plane. Positions, centre and zoom all ease towards their targets, so a coordinate update, a
// re-fit of the projection or a far peer joining glides instead of jumping.

import { Projection } from './projection.js';
import { FLIGHT_MS, barrioColor, pathOf } from './state.js';
import { convexHull } from './hull.js';

/** Re-fit the projection at most this often (ms). */
const REFIT_MS = 1000;
/** Per-frame easing towards targets (positions; zoom in; zoom out). */
const EASE_POS = 0.12;
const EASE_ZOOM_IN = 0.02;
const EASE_ZOOM_OUT = 0.15;
/** Smallest radius shown, in ms, so three peers on one host do not zoom to infinity. */
const MIN_RADIUS_MS = 4;
/** A postcard's tracer takes this long per hop along its path, ms. */
const HOP_MS = 700;

export class Layout {
  constructor() {
    this.proj = new Projection();
    this.pos = new Map(); // id → [x, y] shown, in projected ms
    this.center = null; // [x, y] in projected ms
    this.radius = null; // ms from centre to the frame's edge
    this.fittedAt = -Infinity;
    this.fittedVersion = -1;
  }

  /** The frame for `st` at time `now` (ms) on a `w`×`h` px surface. */
  frame(st, w, h, now) {
    this.refit(st, now);
    const targets = this.targets(st);
    this.ease(targets);
    const self = st.selfId && this.pos.get(st.selfId);
    this.follow(self || meanOf([...this.pos.values()]) || [0, 0], w, h);
    const k = (Math.min(w, h) * 0.44) / this.radius;
    const toScreen = ([x, y]) => [w / 2 + (x - this.center[0]) * k, h / 2 - (y - this.center[1]) * k];
    const peers = placeNames(spreadStacks(this.peers(st, toScreen)), w, h);
    const byId = new Map(peers.map((p) => [p.id, p]));
    const me = byId.get(st.selfId) || { x: w / 2, y: h / 2 };
    return {
      w, h, me, k,
      peers,
      links: this.links(st, byId, me),
      overlay: overlay(st, byId),
      route: route(st, byId, now),
      hulls: placeLabels(this.hulls(st, byId, toScreen)),
      rings: rings(this.radius, k),
      flights: flights(st, byId, me, now),
    };
  }

  refit(st, now) {
    if (st.version === this.fittedVersion || now - this.fittedAt < REFIT_MS) return;
    this.fittedAt = now;
    this.fittedVersion = st.version;
    this.proj.fit([...st.peers.values()].map((p) => p.vec));
  }

  targets(st) {
    const t = new Map();
    for (const p of st.peers.values()) {
      const xy = this.proj.project(p.vec);
      if (xy) t.set(p.id, xy);
    }
    return t;
  }

  ease(targets) {
    for (const id of this.pos.keys()) if (!targets.has(id)) this.pos.delete(id);
    for (const [id, [tx, ty]] of targets) {
      const cur = this.pos.get(id);
      // A newcomer appears where it is; only later moves glide.
      if (!cur) this.pos.set(id, [tx, ty]);
      else this.pos.set(id, [cur[0] + (tx - cur[0]) * EASE_POS, cur[1] + (ty - cur[1]) * EASE_POS]);
    }
  }

  /** Moves the centre towards `c` and the zoom towards what fits most peers. */
  follow(c, w, h) {
    this.center = this.center ? [this.center[0] + (c[0] - this.center[0]) * EASE_POS,
      this.center[1] + (c[1] - this.center[1]) * EASE_POS] : c.slice();
    const d = [...this.pos.values()].map(([x, y]) => Math.hypot(x - c[0], y - c[1])).sort((a, b) => a - b);
    // The 95th percentile past 20 peers: one lost peer far away must not shrink everyone else.
    const far = d.length > 20 ? d[Math.floor(d.length * 0.95)] : d[d.length - 1] || 0;
    const want = Math.max(MIN_RADIUS_MS, far * 1.08) * (w < 500 || h < 500 ? 1.05 : 1);
    if (!this.radius) this.radius = want;
    const ease = want > this.radius ? EASE_ZOOM_OUT : EASE_ZOOM_IN;
    this.radius += (want - this.radius) * ease;
  }

  peers(st, toScreen) {
    const out = [];
    for (const p of st.peers.values()) {
      const xy = this.pos.get(p.id);
      if (!xy) continue;
      const [x, y] = toScreen(xy);
      out.push({ id: p.id, x, y, self: p.id === st.selfId, left: p.left, link: p.link,
        liveness: p.liveness, color: barrioColor(p.barrio), selected: p.id === st.selected, name: p.name });
    }
    return out;
  }

  links(st, byId, me) {
    const out = [];
    for (const p of st.peers.values()) {
      const q = byId.get(p.id);
      if (!q || !p.link || p.id === st.selfId) continue;
      out.push({ id: p.id, status: p.link, x1: me.x, y1: me.y, x2: q.x, y2: q.y });
    }
    return out;
  }

  hulls(st, byId, toScreen) {
    const out = [];
    for (const b of st.barrios.values()) {
      const pts = b.members.map((id) => byId.get(id)).filter(Boolean).map((p) => [p.x, p.y]);
      if (pts.length === 0) continue;
      const c = this.proj.project(b.centroid);
      const [cx, cy] = c ? toScreen(c) : meanOf(pts);
      out.push({ id: b.id, points: convexHull(pts), color: barrioColor(b.id),
        label: `${b.emoji || ''} ${b.name || b.id}`.trim(), count: b.members.length, cx, cy,
        alarm: st.alarms.has(b.id),
        top: Math.max(40, Math.min(...pts.map((p) => p[1]))) });
    }
    return out;
  }
}

/** Others' links (the overlay beyond the viewer's own), between peers on the map. A link of
 * the viewer's that it has as a neighbour is drawn as its own link instead. */
function overlay(st, byId) {
  const out = [];
  for (const e of st.overlay) {
    const a = byId.get(e.a);
    const b = byId.get(e.b);
    if (!a || !b) continue;
    const other = e.a === st.selfId ? e.b : e.b === st.selfId ? e.a : null;
    if (other && st.peers.get(other)?.link) continue;
    out.push({ id: `${e.a} ${e.b}`, a: e.a, b: e.b, hops: e.hops, x1: a.x, y1: a.y, x2: b.x, y2: b.y });
  }
  return out;
}

/** The selected postcard's path: one segment per hop between peers on the map (a hop to a peer
 * the viewer cannot place is left out), numbered from 1, and a tracer walking it hop by hop. */
function route(st, byId, now) {
  const rec = st.card && st.postcards.get(st.card);
  const path = pathOf(rec);
  if (path.length < 2) return null;
  const hops = [];
  for (let i = 1; i < path.length; i++) {
    const a = byId.get(path[i - 1]);
    const b = byId.get(path[i]);
    if (!a || !b) continue;
    hops.push({ n: i, from: path[i - 1], to: path[i], x1: a.x, y1: a.y, x2: b.x, y2: b.y,
      mx: (a.x + b.x) / 2, my: (a.y + b.y) / 2 });
  }
  let tracer = null;
  if (hops.length) {
    const t = (now / HOP_MS) % (hops.length + 1); // one hop's time resting at the destination
    const h = hops[Math.min(hops.length - 1, Math.floor(t))];
    const s = t >= hops.length ? 1 : t - Math.floor(t);
    tracer = { x: h.x1 + (h.x2 - h.x1) * s, y: h.y1 + (h.y2 - h.y1) * s };
  }
  return { id: st.card, hops, total: path.length - 1, tracer };
}

function meanOf(pts) {
  if (pts.length === 0) return null;
  return [pts.reduce((s, p) => s + p[0], 0) / pts.length, pts.reduce((s, p) => s + p[1], 0) / pts.length];
}

/** Peers drawn on (nearly) the same pixel — typically peers whose coordinates have not been
 * published yet, all still at the origin — are fanned out on a small ring around that point,
 * in id order, so every peer stays visible and clickable. Display only: coordinates are not
 * touched. A grid of 4 px cells finds the stacks in linear time. */
function spreadStacks(peers) {
  const cells = new Map();
  for (const p of peers) {
    const k = `${Math.round(p.x / 4)},${Math.round(p.y / 4)}`;
    if (!cells.has(k)) cells.set(k, []);
    cells.get(k).push(p);
  }
  for (const stack of cells.values()) {
    if (stack.length < 2) continue;
    stack.sort((a, b) => (b.self - a.self) || (a.id < b.id ? -1 : 1));
    const r = 6 + 2.5 * stack.length;
    // The viewer (sorted first) stays put; the others share the ring.
    const ring = stack[0].self ? stack.slice(1) : stack;
    ring.forEach((p, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / ring.length;
      p.x += r * Math.cos(a);
      p.y += r * Math.sin(a);
    });
  }
  return peers;
}

/** Chooses which peers get their name written: the viewer and the selection always, then
 * others while the map is not crowded (about one name per 16 000 px²) and the name would not
 * overlap one already written. */
function placeNames(peers, w, h) {
  const budget = peers.length <= (w * h) / 16000 ? peers.length : 0;
  const order = [...peers].sort((a, b) => (b.self - a.self) || (b.selected - a.selected));
  const placed = [];
  let others = 0;
  for (const p of order) {
    const must = p.self || p.selected;
    if (!must && (others >= budget || !p.name)) continue;
    const text = p.self ? `${p.name || 'you'} (you)` : p.name || p.id.slice(-6);
    const box = [p.x + 8, p.y - 8, p.x + 12 + text.length * 7, p.y + 8];
    if (!must && placed.some((o) => box[0] < o[2] && o[0] < box[2] && box[1] < o[3] && o[1] < box[3])) continue;
    placed.push(box);
    p.label = text;
    if (!must) others++;
  }
  return peers;
}

/** Keeps barrio labels from piling up: the biggest barrios are labelled first, and a label
 * that would overlap one already placed is dropped (its region and centroid stay). */
function placeLabels(hulls) {
  const placed = [];
  for (const h of [...hulls].sort((a, b) => b.count - a.count)) {
    const w = (h.label.length + 5) * 7;
    const box = [h.cx - w / 2, h.top - 36, h.cx + w / 2, h.top - 18];
    h.showLabel = !placed.some((o) => box[0] < o[2] && o[0] < box[2] && box[1] < o[3] && o[1] < box[3]);
    if (h.showLabel) placed.push(box);
  }
  return hulls;
}

/** Rings at round distances (1, 2, 5 × 10^n ms), about three inside the frame. */
function rings(radius, k) {
  const raw = radius / 3;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
  const out = [];
  for (let r = step; r <= radius * 1.6 && out.length < 6; r += step) {
    out.push({ r: r * k, label: r >= 1 ? `${+r.toFixed(1)} ms` : `${(r * 1000).toFixed(0)} µs` });
  }
  return out;
}

/** Posts in flight: a point moving from its author to the viewer on an arc; own posts ripple. */
function flights(st, byId, me, now) {
  const out = [];
  for (const f of st.flights) {
    const t = (now - f.t0) / FLIGHT_MS;
    if (t < 0 || t > 1.4) continue;
    const from = byId.get(f.from);
    if (f.own || !from || from === me) {
      out.push({ kind: 'ripple', x: me.x, y: me.y, r: 8 + 70 * Math.min(t, 1.4), alpha: Math.max(0, 1 - t / 1.4) });
      continue;
    }
    if (t > 1) {
      out.push({ kind: 'ripple', x: me.x, y: me.y, r: 8 + 120 * (t - 1), alpha: 1 - (t - 1) / 0.4 });
      continue;
    }
    const e = t < 0.5 ? 2 * t * t : 1 - (-2 * t + 2) ** 2 / 2; // ease in-out
    // Control point off the chord, so flights from one direction do not overlap the link line.
    const mx = (from.x + me.x) / 2 - (me.y - from.y) * 0.25;
    const my = (from.y + me.y) / 2 + (me.x - from.x) * 0.25;
    const at = (s) => [(1 - s) ** 2 * from.x + 2 * (1 - s) * s * mx + s * s * me.x,
      (1 - s) ** 2 * from.y + 2 * (1 - s) * s * my + s * s * me.y];
    out.push({ kind: 'dot', head: at(e), tail: at(Math.max(0, e - 0.12)), alpha: 1 });
  }
  return out;
}
