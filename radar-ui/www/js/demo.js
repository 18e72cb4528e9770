// The demo feed (`?demo=N`): N simulated peers in 8-D clusters, links that flap, posts that
// fly, coordinates that drift every frame, and an overlay of others' links (each peer linked
// to its nearest in its cluster). It writes the state through the same functions as
// the live feed, so it exercises the same layout and rendering, and it keeps the map busy on
// every frame, which is what makes its frames-per-second figure mean something.

import { addPost, applyLink, applyOverlay, applySnapshot } from './state.js';

const DIMS = 8;
/** Overlay links per simulated peer (to its nearest in its cluster). */
const DEMO_DEGREE = 3;
const WORDS = ['sunny-plaza', 'quiet-corner', 'lively-market', 'breezy-harbor', 'golden-alley', 'misty-garden',
  'cozy-bakery', 'windy-terrace', 'shady-fountain', 'sandy-bridge', 'rocky-orchard', 'leafy-pier',
  'salty-courtyard', 'dusty-kiosk', 'starry-cantina', 'rainy-mercado', 'mellow-placita', 'bright-rambla'];
const EMOJI = ['🌵', '🌮', '🎸', '🌻', '🐙', '🦜', '🍋', '🌶', '🐢', '🦊', '🍉', '🌈', '🚲', '🎈', '🐝', '🍄', '🌙', '⭐'];
const TOPICS = ['news', 'weather', 'convoy', 'ops', 'chat'];
const LINES = ['all quiet here', 'link to the ridge is back', 'fuel at 60 %', 'moving north at dawn',
  'rain on the east road', 'relay up on the hill', 'who has the spare radio?', 'arrived safe'];

/** A small seeded PRNG (mulberry32), so a demo looks the same on every load. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gauss(r) {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** A simulated peer's status: a few offline, a few unreachable, the rest online. */
function demoLiveness(x) {
  if (x < 0.03) return 'offline';
  if (x < 0.06) return 'unreachable';
  return 'online';
}

/** Builds the world and starts its clock; returns a `tick(now)` to call every frame. */
export function startDemo(st, n) {
  const r = rng(42);
  // Statuses from a generator of their own, so the map's layout is the same as without them.
  const rs = rng(7);
  const clusters = Math.max(2, Math.min(WORDS.length, Math.round(Math.sqrt(n) / 1.5)));
  const centres = Array.from({ length: clusters }, () => Array.from({ length: DIMS }, () => gauss(r) * 60));
  const barrios = centres.map((c, i) => ({ id: (0x1000 + i * 7919).toString(16).padStart(16, '0'),
    name: WORDS[i], emoji: EMOJI[i], members: [], centroid_ms: c }));
  const members = [];
  const inCluster = centres.map(() => []);
  for (let i = 0; i < n; i++) {
    const k = i === 0 ? 0 : Math.floor(r() * clusters);
    inCluster[k].push(i);
    const id = `12D3KooWDemo${String(i).padStart(5, '0')}`;
    barrios[k].members.push(id);
    members.push({
      peer_id: id, name: i === 0 ? 'base-camp' : `peer-${String(i).padStart(3, '0')}`, self: i === 0, status: 'alive',
      coordinate: { vec_ms: centres[k].map((x) => x + gauss(r) * 9), height_ms: 0.5 + r() * 4, error: 0.1 + r() * 0.5 },
      barrio: barrios[k].id,
      newspaper: { uptime_s: Math.floor(r() * 86400), restarts: Math.floor(r() * 3), connected: 3 + Math.floor(r() * 8), barrio: 0, flags: 0 },
      liveness: i === 0 ? null : demoLiveness(rs()),
      clout: i === 0 ? null : { value: 0.02 + rs() * 0.6, tenure: 0.5, agreement: 0.5, proximity: 1 },
    });
  }
  // The viewer's neighbours: its nearest peers plus a few random long links, as the engine picks.
  const me = members[0];
  const dist = (a, b) => Math.hypot(...a.coordinate.vec_ms.map((x, i) => x - b.coordinate.vec_ms[i]));
  const near = members.slice(1).sort((a, b) => dist(me, a) - dist(me, b));
  const neighbours = [...near.slice(0, 8), ...near.slice(8).filter(() => r() < 4 / n)];
  for (const m of members.slice(1)) m.estimated_rtt_ms = dist(me, m) + m.coordinate.height_ms + me.coordinate.height_ms;
  for (const m of neighbours) {
    m.link = 'connected';
    m.rtt_ms = m.estimated_rtt_ms * (0.85 + r() * 0.3);
  }
  // Others' links, as their link state would publish them: each peer's nearest among the 60
  // around it in its cluster sorted along the first axis (linear time even at 20 000 peers).
  const edges = [];
  for (const ids of inCluster) {
    ids.sort((i, j) => members[i].coordinate.vec_ms[0] - members[j].coordinate.vec_ms[0]);
    ids.forEach((i, at) => {
      const a = members[i];
      const near = ids.slice(Math.max(0, at - 30), at + 31).filter((j) => j !== i)
        .map((j) => [dist(a, members[j]), j]).sort((x, y) => x[0] - y[0]);
      for (const [d, j] of near.slice(0, DEMO_DEGREE)) edges.push({ from: a.peer_id, to: members[j].peer_id, rtt_ms: d });
    });
  }
  const now0 = performance.now();
  applySnapshot(st, { self: { peer_id: me.peer_id, name: 'base-camp' }, members, links: [], posts: [], barrios }, now0);
  applyOverlay(st, edges);
  st.mode = 'demo';
  st.stream = 'open';

  let nextPost = now0 + 300;
  let nextFlap = now0 + 2500;
  let cursor = 1;
  return function tick(now) {
    // Every coordinate drifts a little every frame: the worst case for the renderer.
    for (const p of st.peers.values()) {
      if (!p.vec) continue;
      for (let d = 0; d < p.vec.length; d++) p.vec[d] += (r() - 0.5) * 0.05;
    }
    if (now >= nextPost) {
      nextPost = now + 250 + r() * 500;
      const from = members[1 + Math.floor(r() * (n - 1))] || me;
      addPost(st, { id: `demo-${cursor}`, cursor, peer_id: from.peer_id, topic: TOPICS[Math.floor(r() * TOPICS.length)],
        text: LINES[Math.floor(r() * LINES.length)], hlc_ms: Date.now(), own: false }, now, true);
      cursor++;
    }
    if (now >= nextFlap && neighbours.length) {
      nextFlap = now + 2000 + r() * 2000;
      const m = neighbours[Math.floor(r() * neighbours.length)];
      const next = { connected: 'suspected', suspected: r() < 0.5 ? 'connected' : 'disconnected', disconnected: 'connected' };
      applyLink(st, { peer_id: m.peer_id, status: next[st.peers.get(m.peer_id)?.link || 'connected'] });
    }
  };
}
