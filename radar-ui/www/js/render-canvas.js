// Paints frames on a canvas, for maps past a couple of thousand peers where one SVG element per
// peer costs more in style and layout than the whole canvas repaint. Same frame, same look.

const LINK_COLOR = { connected: '#3ddc97', suspected: '#ffb547', disconnected: '#ff5d73' };
const LINK_DASH = { connected: [], suspected: [6, 5], disconnected: [2, 5] };
/** The marks of peers the viewer believes offline or unreachable (radar.css --offline, --unreachable). */
const LIVENESS_COLOR = { offline: '#ff5d73', unreachable: '#ffb547' };

export function createCanvasRenderer(container) {
  const canvas = document.createElement('canvas');
  canvas.className = 'radar-canvas';
  container.appendChild(canvas);
  const ctx = canvas.getContext('2d');
  const renderer = {
    kind: 'canvas',
    element: canvas,
    /** What the last frame stroked, for the browser test: a canvas keeps no elements to query.
     * `overlay`/`links`: segments stroked and the alpha each was stroked with (lowest, highest). */
    painted: null,
    draw(f) {
      const dpr = window.devicePixelRatio || 1;
      if (canvas.width !== Math.round(f.w * dpr) || canvas.height !== Math.round(f.h * dpr)) {
        canvas.width = Math.round(f.w * dpr);
        canvas.height = Math.round(f.h * dpr);
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, f.w, f.h);
      drawRings(ctx, f);
      drawHulls(ctx, f);
      const overlay = drawOverlay(ctx, f);
      const links = drawLinks(ctx, f);
      renderer.painted = { overlay, links, route: drawRoute(ctx, f) };
      drawPeers(ctx, f);
      drawLabels(ctx, f);
      drawRouteLabels(ctx, f);
      drawFlights(ctx, f);
    },
    destroy() { canvas.remove(); },
  };
  return renderer;
}

/** Counts a stroke of `n` segments at the context's alpha into `p` ({ segments, alpha: [lo, hi] }). */
function tally(p, ctx, n) {
  if (n === 0) return;
  p.segments += n;
  p.alpha = [Math.min(p.alpha[0], ctx.globalAlpha), Math.max(p.alpha[1], ctx.globalAlpha)];
}

function tallied() {
  return { segments: 0, alpha: [Infinity, -Infinity] };
}

function drawRings(ctx, f) {
  ctx.save();
  ctx.strokeStyle = '#2a3766';
  ctx.setLineDash([2, 6]);
  ctx.fillStyle = '#56608a';
  ctx.font = '11px system-ui, sans-serif';
  for (const r of f.rings) {
    ctx.beginPath();
    ctx.arc(f.me.x, f.me.y, r.r, 0, Math.PI * 2);
    ctx.stroke();
    ctx.fillText(r.label, f.me.x + r.r * 0.707 + 3, f.me.y - r.r * 0.707 - 3);
  }
  ctx.restore();
}

function drawHulls(ctx, f) {
  ctx.save();
  ctx.globalAlpha = 0.16;
  ctx.lineJoin = 'round';
  ctx.lineCap = 'round';
  ctx.lineWidth = 32;
  for (const h of f.hulls) {
    if (h.points.length === 0) continue;
    ctx.beginPath();
    ctx.moveTo(h.points[0][0], h.points[0][1]);
    for (const p of h.points.slice(1)) ctx.lineTo(p[0], p[1]);
    if (h.points.length === 1) ctx.lineTo(h.points[0][0], h.points[0][1]);
    ctx.closePath();
    ctx.fillStyle = h.color;
    ctx.strokeStyle = h.color;
    ctx.fill();
    ctx.stroke();
  }
  ctx.restore();
}

/** Others' links: two strokes (near the viewer, and farther), each one path. */
function drawOverlay(ctx, f) {
  const p = tallied();
  ctx.save();
  ctx.strokeStyle = '#9aa6d6';
  ctx.lineCap = 'round';
  for (const [near, alpha, width] of [[true, 0.34, 1.1], [false, 0.2, 0.8]]) {
    ctx.globalAlpha = alpha;
    ctx.lineWidth = width;
    ctx.beginPath();
    let n = 0;
    for (const l of f.overlay) {
      if ((l.hops <= 1) !== near) continue;
      ctx.moveTo(l.x1, l.y1);
      ctx.lineTo(l.x2, l.y2);
      n++;
    }
    ctx.stroke();
    tally(p, ctx, n);
  }
  ctx.restore();
  return p;
}

const ROUTE = '#ffd166';

function drawRoute(ctx, f) {
  const p = tallied();
  if (!f.route) return p;
  ctx.save();
  ctx.strokeStyle = ROUTE;
  ctx.globalAlpha = 0.9;
  ctx.lineWidth = 3.5;
  ctx.lineCap = 'round';
  ctx.beginPath();
  for (const hop of f.route.hops) {
    ctx.moveTo(hop.x1, hop.y1);
    ctx.lineTo(hop.x2, hop.y2);
  }
  ctx.stroke();
  tally(p, ctx, f.route.hops.length);
  ctx.restore();
  return p;
}

function drawRouteLabels(ctx, f) {
  if (!f.route) return;
  ctx.save();
  ctx.font = '700 11px system-ui, sans-serif';
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = '#0b1020';
  for (const hop of f.route.hops) {
    ctx.beginPath();
    ctx.arc(hop.mx, hop.my, 8, 0, Math.PI * 2);
    ctx.fillStyle = ROUTE;
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = '#0b1020';
    ctx.fillText(String(hop.n), hop.mx, hop.my + 0.5);
  }
  const t = f.route.tracer;
  if (t) {
    ctx.beginPath();
    ctx.arc(t.x, t.y, 5, 0, Math.PI * 2);
    ctx.fillStyle = '#ffffff';
    ctx.fill();
    ctx.strokeStyle = ROUTE;
    ctx.lineWidth = 2;
    ctx.stroke();
  }
  ctx.restore();
}

function drawLinks(ctx, f) {
  const p = tallied();
  ctx.save();
  ctx.lineCap = 'round';
  for (const l of f.links) {
    ctx.strokeStyle = LINK_COLOR[l.status] || LINK_COLOR.disconnected;
    ctx.setLineDash(LINK_DASH[l.status] || []);
    ctx.lineWidth = l.status === 'suspected' ? 2 : 1.6;
    ctx.beginPath();
    ctx.moveTo(l.x1, l.y1);
    ctx.lineTo(l.x2, l.y2);
    ctx.stroke();
    tally(p, ctx, 1);
  }
  ctx.restore();
  return p;
}

/** Peers drawn one by one (the others are batched by colour). */
const special = (p) => p.self || p.selected || p.left || p.liveness === 'offline' || p.liveness === 'unreachable';

function drawPeers(ctx, f) {
  ctx.save();
  // Batch the plain peers by colour: one path per barrio colour instead of one per peer.
  const byColor = new Map();
  for (const p of f.peers) {
    if (special(p)) continue;
    if (!byColor.has(p.color)) byColor.set(p.color, []);
    byColor.get(p.color).push(p);
  }
  for (const [color, ps] of byColor) {
    ctx.fillStyle = color;
    ctx.beginPath();
    for (const p of ps) {
      ctx.moveTo(p.x + 3.5, p.y);
      ctx.arc(p.x, p.y, 3.5, 0, Math.PI * 2);
    }
    ctx.fill();
  }
  // As the SVG renderer marks them: offline hollow, red and dashed; unreachable ringed amber.
  for (const p of f.peers) {
    if (!special(p)) continue;
    const offline = !p.self && !p.left && p.liveness === 'offline';
    const unreachable = !p.self && !p.left && p.liveness === 'unreachable';
    ctx.beginPath();
    ctx.arc(p.x, p.y, p.self ? 8 : p.selected ? 7 : 4.5, 0, Math.PI * 2);
    ctx.globalAlpha = unreachable ? 0.55 : 1;
    ctx.fillStyle = p.self ? '#ffffff' : p.left || offline ? 'transparent' : p.color;
    ctx.fill();
    ctx.globalAlpha = 1;
    ctx.setLineDash(offline ? [2, 2] : []);
    ctx.lineWidth = p.self ? 3 : unreachable ? 2.5 : 2;
    ctx.strokeStyle = p.self ? p.color : p.selected ? '#ffffff' : p.left ? '#6b7399'
      : offline ? LIVENESS_COLOR.offline : LIVENESS_COLOR.unreachable;
    ctx.stroke();
  }
  ctx.setLineDash([]);
  ctx.restore();
}

function drawLabels(ctx, f) {
  ctx.save();
  ctx.font = '600 12px system-ui, sans-serif';
  ctx.textAlign = 'center';
  ctx.lineWidth = 3;
  ctx.strokeStyle = '#0b1020';
  for (const h of f.hulls) {
    if (!h.showLabel && !h.alarm) continue;
    const text = `${h.alarm ? '⚠ ' : ''}${h.label} · ${h.count}`;
    ctx.fillStyle = h.alarm ? '#ff5d73' : h.color;
    ctx.strokeText(text, h.cx, h.top - 22);
    ctx.fillText(text, h.cx, h.top - 22);
    if (h.alarm) {
      // A coherence alarm: a red ring on the centroid.
      ctx.save();
      ctx.strokeStyle = '#ff5d73';
      ctx.lineWidth = 2.5;
      ctx.beginPath();
      ctx.arc(h.cx, h.cy, 14, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.restore();
    }
  }
  ctx.textAlign = 'left';
  ctx.font = '12px system-ui, sans-serif';
  for (const p of f.peers) {
    if (!p.label) continue;
    const text = p.label;
    ctx.fillStyle = '#c9d2f5';
    ctx.strokeText(text, p.x + 10, p.y + 4);
    ctx.fillText(text, p.x + 10, p.y + 4);
  }
  ctx.restore();
}

function drawFlights(ctx, f) {
  ctx.save();
  for (const fl of f.flights) {
    ctx.globalAlpha = Math.max(0, Math.min(1, fl.alpha));
    ctx.beginPath();
    if (fl.kind === 'ripple') {
      ctx.arc(fl.x, fl.y, fl.r, 0, Math.PI * 2);
      ctx.strokeStyle = '#9fb4ff';
      ctx.lineWidth = 2;
      ctx.stroke();
    } else {
      ctx.strokeStyle = '#9fb4ff';
      ctx.lineWidth = 3;
      ctx.lineCap = 'round';
      ctx.moveTo(fl.tail[0], fl.tail[1]);
      ctx.lineTo(fl.head[0], fl.head[1]);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(fl.head[0], fl.head[1], 4, 0, Math.PI * 2);
      ctx.fillStyle = '#ffffff';
      ctx.fill();
    }
  }
  ctx.restore();
}
