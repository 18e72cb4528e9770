// What the page knows: peers, the viewer's links, barrios and recent posts. Both feeds (the
// live node and the demo) write here through the same functions, so the renderers never care
// where the data came from.

/** Posts kept for the list (newest first). */
export const MAX_POSTS = 60;
/** Post flights animated at once; a burst beyond this is shown in the list only. */
export const MAX_FLIGHTS = 40;
/** How long a post takes to travel to the viewer on the map, in ms. */
export const FLIGHT_MS = 1400;

export function createState() {
  return {
    selfId: null,
    selfName: '',
    peers: new Map(), // peer id → peer
    barrios: new Map(), // barrio id → { id, name, emoji, members, centroid }
    posts: [], // newest first
    postIds: new Set(),
    flights: [], // { from, own, t0 }
    seen: new Map(), // peer id → when this page last saw it update (ms, page clock)
    stream: 'connecting', // connecting | open | lost
    selected: null,
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
    clout: numberOr(m.clout, null),
  };
}

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
    id: b.id, name: b.name, emoji: b.emoji, members: b.members || [], centroid: b.centroid_ms || null,
  }]));
  for (const post of [...(snap.posts || [])]) addPost(st, post, now, false);
  st.version++;
}

/** A link event: `{ peer_id, status }`. */
export function applyLink(st, ev) {
  const p = st.peers.get(ev.peer_id);
  if (!p || p.link === ev.status) return;
  p.link = ev.status;
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
