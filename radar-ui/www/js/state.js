// What the page knows: peers, the viewer's links, the overlay's other links, barrios, recent
// posts and postcards. Both feeds (the live node and the demo) write here through the same
// functions, so the renderers never care where the data came from.

/** Posts kept for the list (newest first). */
export const MAX_POSTS = 60;
/** Post flights animated at once; a burst beyond this is shown in the list only. */
export const MAX_FLIGHTS = 40;
/** How long a post takes to travel to the viewer on the map, in ms. */
export const FLIGHT_MS = 1400;
/** Postcard records kept per box (inbox, sent), newest first. */
export const MAX_POSTCARDS = 100;
/** Overlay links kept for the map at most, nearest the viewer first. */
export const MAX_OVERLAY = 2000;
/** Coherence alarms kept at most (raised, not yet cleared). */
export const MAX_ALARMS = 50;

export function createState() {
  return {
    selfId: null,
    selfName: '',
    peers: new Map(), // peer id → peer
    barrios: new Map(), // barrio id → { id, name, emoji, members, centroid, head, health, own }
    // Coherence alarms raised and not cleared: barrio id → { id, name, emoji, d2, threshold, moved }
    // (`coherence` events; kept across snapshots, which do not carry them).
    alarms: new Map(),
    posts: [], // newest first
    postIds: new Set(),
    overlay: [], // others' links, undirected, nearest the viewer first: { a, b, rtt, hops }
    overlayKey: '',
    postcards: new Map(), // `${box} ${id}` → record (as /v1/postcards has it)
    card: null, // key of the postcard whose path is drawn
    cardsVersion: 0, // bumped on every postcard change (the panel redraws on it)
    flights: [], // { from, own, t0 }
    seen: new Map(), // peer id → when this page last saw it update (ms, page clock)
    stream: 'connecting', // connecting | open | lost | unauthorized
    selected: null,
    // What the viewer believes about the selected peer (`/v1/opinions?peer=`): { peer, data,
    // error } — `data` the node's answer, `error` its refusal (this peer: no opinion of itself).
    opinion: null,
    version: 0, // bumped on every change that needs a new layout
  };
}

/** One member of the snapshot, reduced to what the page draws. */
function peerOf(m) {
  const c = m.coordinate;
  return {
    id: m.peer_id,
    name: m.name || '',
    self: !!m.self,
    left: m.status === 'left',
    link: m.link || null,
    rtt: numberOr(m.rtt_ms, null),
    est: numberOr(m.estimated_rtt_ms, null),
    vec: c && Array.isArray(c.vec_ms) ? c.vec_ms.map(Number) : null,
    height: c ? numberOr(c.height_ms, null) : null,
    error: c ? numberOr(c.error, null) : null,
    barrio: m.barrio || null,
    newspaper: m.newspaper || null,
    // What the viewer believes about it: online, unreachable or offline (null: nobody observes
    // it yet, or it is the viewer).
    liveness: LIVENESS.has(m.liveness) ? m.liveness : null,
    // Its clout in the viewer's eyes as an observer (null: it observes nothing held here).
    clout: m.clout && typeof m.clout === 'object' ? {
      value: numberOr(m.clout.value, null),
      tenure: numberOr(m.clout.tenure, null),
      agreement: numberOr(m.clout.agreement, null),
      proximity: numberOr(m.clout.proximity, null),
    } : null,
  };
}

/** The statuses a peer can have in the viewer's eyes. */
export const LIVENESS = new Set(['online', 'unreachable', 'offline']);

function numberOr(v, dflt) {
  return typeof v === 'number' && Number.isFinite(v) ? v : dflt;
}

/** Replaces peers, links and barrios with a snapshot (`/v1/radar`), keeping the selection. */
export function applySnapshot(st, snap, now) {
  st.selfId = snap.self?.peer_id ?? st.selfId;
  st.selfName = snap.self?.name ?? st.selfName;
  const peers = new Map();
  for (const m of snap.members || []) {
    if (!m || typeof m.peer_id !== 'string') continue;
    const p = peerOf(m);
    const old = st.peers.get(p.id);
    // A newspaper that changed since the last snapshot counts as seen now.
    if (!old || JSON.stringify(old.newspaper) !== JSON.stringify(p.newspaper)) st.seen.set(p.id, now);
    peers.set(p.id, p);
  }
  // Links: the snapshot's list is authoritative for status (members carry it too).
  for (const l of snap.links || []) {
    const p = peers.get(l.peer_id);
    if (p) {
      p.link = l.status;
      p.rtt = numberOr(l.rtt_ms, p.rtt);
    }
  }
  st.peers = peers;
  st.barrios = new Map((snap.barrios || []).map((b) => [b.id, {
    id: b.id, name: b.name, emoji: b.emoji, members: Array.isArray(b.members) ? b.members : [],
    centroid: Array.isArray(b.centroid_ms) ? b.centroid_ms.map(Number) : null,
    head: typeof b.head === 'string' ? b.head : null,
    health: b.health && typeof b.health === 'object' ? b.health : {},
    own: !!b.own,
  }]));
  for (const post of [...(snap.posts || [])]) addPost(st, post, now, false);
  for (const card of snap.postcards || []) addPostcard(st, card);
  st.version++;
}

/** A link event: `{ peer_id, status }`. */
export function applyLink(st, ev) {
  const p = st.peers.get(ev.peer_id);
  if (!p || p.link === ev.status) return;
  p.link = ev.status;
  st.version++;
}

/** A status event: `{ peer_id, status }` (the viewer's belief about a peer's liveness changed). */
export function applyStatus(st, ev) {
  const p = st.peers.get(ev?.peer_id);
  if (!p || !LIVENESS.has(ev.status) || p.liveness === ev.status) return false;
  p.liveness = ev.status;
  st.version++;
  return true;
}

/**
 * A coherence event: `{ barrio, name, emoji, state: raised|cleared, d2, threshold, moved:
 * [{ feature, z }] }`. Raised marks the barrio (kept until cleared; at most MAX_ALARMS, a new
 * one past that is dropped), cleared removes the mark. Returns whether anything changed.
 */
export function applyCoherence(st, ev) {
  if (!ev || typeof ev.barrio !== 'string' || !/^[0-9a-f]{16}$/.test(ev.barrio)) return false;
  if (ev.state === 'cleared') {
    if (!st.alarms.delete(ev.barrio)) return false;
  } else if (ev.state === 'raised') {
    if (!st.alarms.has(ev.barrio) && st.alarms.size >= MAX_ALARMS) return false;
    const moved = (Array.isArray(ev.moved) ? ev.moved : [])
      .filter((m) => m && typeof m.feature === 'string' && typeof m.z === 'number' && Number.isFinite(m.z))
      .sort((a, b) => Math.abs(b.z) - Math.abs(a.z))
      .slice(0, 3)
      .map((m) => ({ feature: m.feature, z: m.z }));
    st.alarms.set(ev.barrio, {
      id: ev.barrio, name: typeof ev.name === 'string' ? ev.name : '', emoji: typeof ev.emoji === 'string' ? ev.emoji : '',
      d2: numberOr(ev.d2, null), threshold: numberOr(ev.threshold, null), moved,
    });
  } else {
    return false;
  }
  st.version++;
  return true;
}

/** One banner line per alarm: `barrio 🌵 sunny-x incoherent: rtt_ms z=3.2, …`. */
export function alarmLines(st) {
  return [...st.alarms.values()].map((a) => {
    const moved = a.moved.map((m) => `${m.feature} z=${m.z.toFixed(1)}`).join(', ');
    const name = `${a.emoji} ${a.name || a.id}`.trim();
    return `barrio ${name} incoherent${moved ? `: ${moved}` : ''}`;
  });
}

/** The viewer's opinion of peer `peer` (`/v1/opinions?peer=`), or why there is none. */
export function applyOpinion(st, peer, data, error = null) {
  st.opinion = { peer, data: data && typeof data === 'object' ? data : null, error };
  st.version++;
}

/** A post (as `/v1/posts` or the `post` event has it); `fly` animates it on the map. */
export function addPost(st, post, now, fly = true) {
  if (!post || typeof post.id !== 'string' || st.postIds.has(post.id)) return;
  st.postIds.add(post.id);
  st.posts.unshift(post);
  st.posts.sort((a, b) => (b.cursor ?? 0) - (a.cursor ?? 0) || (b.hlc_ms ?? 0) - (a.hlc_ms ?? 0));
  while (st.posts.length > MAX_POSTS) st.postIds.delete(st.posts.pop().id);
  if (fly && st.flights.length < MAX_FLIGHTS) st.flights.push({ from: post.peer_id, own: !!post.own, t0: now });
  st.version++;
}

/**
 * The overlay as the viewer knows it (`/v1/overlay` edges: `{ from, to, rtt_ms }` by peer id,
 * one per direction a peer published). Kept undirected, one per pair, ordered by how many hops
 * the nearer end is from the viewer (breadth first over the edges and the viewer's connected
 * links), then by RTT, and cut at MAX_OVERLAY: on a big fleet the links around the viewer are
 * the ones drawn. Ends this peer cannot name (a key prefix) are kept; the map skips what it
 * cannot place.
 */
export function applyOverlay(st, edges) {
  const pairs = new Map();
  for (const e of Array.isArray(edges) ? edges : []) {
    if (!e || typeof e.from !== 'string' || typeof e.to !== 'string' || e.from === e.to) continue;
    const [a, b] = e.from < e.to ? [e.from, e.to] : [e.to, e.from];
    const k = `${a} ${b}`;
    const rtt = numberOr(e.rtt_ms, null);
    const old = pairs.get(k);
    if (!old) pairs.set(k, { a, b, rtt, hops: Infinity });
    else if (rtt != null) old.rtt = old.rtt == null ? rtt : Math.min(old.rtt, rtt);
  }
  const next = new Map();
  const link = (x, y) => {
    if (!next.has(x)) next.set(x, []);
    next.get(x).push(y);
  };
  for (const p of pairs.values()) {
    link(p.a, p.b);
    link(p.b, p.a);
  }
  for (const p of st.peers.values()) {
    if (p.link === 'connected' && st.selfId) {
      link(st.selfId, p.id);
      link(p.id, st.selfId);
    }
  }
  const dist = new Map();
  if (st.selfId) {
    dist.set(st.selfId, 0);
    const queue = [st.selfId];
    for (let i = 0; i < queue.length; i++) {
      const d = dist.get(queue[i]);
      for (const y of next.get(queue[i]) || []) {
        if (!dist.has(y)) {
          dist.set(y, d + 1);
          queue.push(y);
        }
      }
    }
  }
  const list = [...pairs.values()];
  for (const p of list) p.hops = Math.min(dist.get(p.a) ?? Infinity, dist.get(p.b) ?? Infinity);
  list.sort((x, y) => x.hops - y.hops || (x.rtt ?? Infinity) - (y.rtt ?? Infinity) || (x.a < y.a ? -1 : x.a > y.a ? 1 : x.b < y.b ? -1 : 1));
  const kept = list.slice(0, MAX_OVERLAY);
  const key = kept.map((p) => `${p.a} ${p.b} ${p.hops}`).join(',');
  st.overlay = kept;
  if (key !== st.overlayKey) {
    st.overlayKey = key;
    st.version++;
  }
}

/** Where a status stands in a postcard's life: a record never goes back to an earlier one. */
const CARD_STAGE = { custody: 0, forwarded: 1, received: 2, delivered: 2, expired: 2 };

/**
 * A postcard record (from the snapshot, a `postcard` event — one received here — or a
 * `postcard_status` event — one sent from here moved on). A record replaces the one with the
 * same box and id unless that one is newer (a snapshot read before an event may land after
 * it). Each box keeps its newest MAX_POSTCARDS records. Returns whether anything changed.
 */
export function addPostcard(st, rec) {
  if (!rec || typeof rec.id !== 'string' || (rec.box !== 'inbox' && rec.box !== 'sent')) return false;
  const key = cardKey(rec);
  const old = st.postcards.get(key);
  if (old) {
    const [t0, t1] = [numberOr(old.updated_ms, 0), numberOr(rec.updated_ms, 0)];
    if (t0 > t1 || (t0 === t1 && (CARD_STAGE[old.status] ?? 0) > (CARD_STAGE[rec.status] ?? 0))) return false;
    if (JSON.stringify(old) === JSON.stringify(rec)) return false;
  }
  st.postcards.set(key, rec);
  const box = postcardsOf(st, rec.box);
  for (const r of box.slice(MAX_POSTCARDS)) st.postcards.delete(cardKey(r));
  if (st.card && !st.postcards.has(st.card)) st.card = null;
  st.cardsVersion++;
  st.version++;
  return true;
}

/** The key of a postcard record in `st.postcards`. */
export function cardKey(rec) {
  return `${rec.box} ${rec.id}`;
}

/** One box's records, newest first (by record number, which a status change keeps). */
export function postcardsOf(st, box) {
  return [...st.postcards.values()].filter((r) => r.box === box)
    .sort((a, b) => numberOr(b.cursor, 0) - numberOr(a.cursor, 0) || numberOr(b.sent_ms, 0) - numberOr(a.sent_ms, 0));
}

/** Shows the path of postcard `key` on the map (null: none). */
export function selectPostcard(st, key) {
  st.card = key && st.postcards.has(key) ? key : null;
  st.cardsVersion++;
  st.version++;
}

/** The peers a postcard crossed, author to destination (ids as the node names them). */
export function pathOf(rec) {
  return Array.isArray(rec?.path) ? rec.path.filter((x) => typeof x === 'string') : [];
}

/** Drops flights that have landed. */
export function pruneFlights(st, now) {
  st.flights = st.flights.filter((f) => now - f.t0 < FLIGHT_MS + 600);
}

/** The viewer's own links by status, for the banner and the header. */
export function linkCounts(st) {
  const n = { connected: 0, suspected: 0, disconnected: 0 };
  for (const p of st.peers.values()) if (p.link in n) n[p.link]++;
  return n;
}

/** A stable colour for a barrio id: a hash of the id picks the hue, so it never changes. */
export function barrioColor(id, alpha = 1) {
  if (!id) return `hsla(228, 20%, 60%, ${alpha})`;
  let h = 2166136261;
  for (const c of String(id)) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return `hsla(${(h >>> 0) % 360}, 80%, 66%, ${alpha})`;
}
