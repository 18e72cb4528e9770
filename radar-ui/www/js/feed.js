// The live feed: one snapshot (`/v1/radar`) on load, then the node's event stream
// (`/v1/events`). Link, status, post, postcard and coherence events are applied at once; member and coordinate
// events only say *that* something changed, so they schedule a fresh snapshot (debounced). A
// slow periodic snapshot catches what events do not carry (coordinates of others move through
// pongs). The overlay (`/v1/overlay`: the link state peers publish, which changes at most every
// few tens of seconds per peer) is fetched on its own, on (re)subscription and every 10 s; the
// selected peer's opinions (who says what) with every snapshot and when its status changes.

import { addPost, addPostcard, applyCoherence, applyLink, applyOpinion, applyOverlay, applySnapshot, applyStatus } from './state.js';

/** Fresh snapshot at most this often after change events (ms). */
const DEBOUNCE_MS = 700;
/** And at least this often regardless (ms). */
const PERIODIC_MS = 5000;
/** The overlay this often (ms). */
const OVERLAY_MS = 10000;

/**
 * Fetches what the viewer believes about the selected peer (`/v1/opinions?peer=`): its status
 * and who says what, with each observer's clout. Nothing when no peer is selected; a refusal
 * (404: this peer, which keeps no opinion of itself; or one that is gone) is kept as the reason.
 */
export async function refreshOpinion(st) {
  const peer = st.selected;
  if (!peer) return;
  try {
    const res = await fetch(`/v1/opinions?peer=${encodeURIComponent(peer)}`, { cache: 'no-store' });
    const body = await res.json().catch(() => null);
    if (st.selected !== peer) return; // another peer was picked meanwhile
    if (res.ok) applyOpinion(st, peer, body);
    else applyOpinion(st, peer, null, body?.error || `HTTP ${res.status}`);
  } catch {
    // The node may be restarting; the next snapshot asks again.
  }
}

export function startLive(st, onChange) {
  let timer = null;
  let inflight = false;

  async function refresh() {
    timer = null;
    if (inflight) return schedule();
    inflight = true;
    try {
      const res = await fetch('/v1/radar', { cache: 'no-store' });
      if (res.ok) {
        applySnapshot(st, await res.json(), performance.now());
        refreshOpinion(st);
        onChange();
      } else if (res.status === 401) {
        // The node's API needs a token and this page has none (or a wrong one).
        st.stream = 'unauthorized';
        onChange();
      }
    } catch {
      // The node may be restarting; the stream's reconnect will bring us back.
    } finally {
      inflight = false;
    }
  }

  function schedule() {
    if (!timer) timer = setTimeout(refresh, DEBOUNCE_MS);
  }

  let overlayInflight = false;
  async function refreshOverlay() {
    if (overlayInflight) return;
    overlayInflight = true;
    try {
      const res = await fetch('/v1/overlay', { cache: 'no-store' });
      if (res.ok) {
        applyOverlay(st, (await res.json()).edges);
        onChange();
      }
    } catch {
      // As for snapshots: the next round or the stream's reconnect brings it back.
    } finally {
      overlayInflight = false;
    }
  }

  const es = new EventSource('/v1/events');
  es.addEventListener('ready', () => {
    st.stream = 'open';
    // Subscribed: nothing after this point is missed, so take the snapshot now.
    // The overlay after it: its order (nearest the viewer first) needs the viewer's links.
    refresh().then(refreshOverlay);
  });
  es.addEventListener('link', (e) => {
    const ev = parse(e.data);
    if (ev) applyLink(st, ev);
    schedule(); // a link change also changes measured RTTs and counts
    onChange();
  });
  // `status`: the viewer's belief about a peer's liveness changed (online, unreachable,
  // offline): the map marks it at once, and the card of the peer shown asks again who says what.
  es.addEventListener('status', (e) => {
    const ev = parse(e.data);
    if (applyStatus(st, ev) && ev.peer_id === st.selected) refreshOpinion(st);
    onChange();
  });
  es.addEventListener('post', (e) => {
    const post = parse(e.data);
    if (post) addPost(st, post, performance.now(), true);
    onChange();
  });
  // `postcard`: one received here; `postcard_status`: one sent from here moved on (custody,
  // forwarded, delivered with its path, expired). Both carry the record.
  for (const kind of ['postcard', 'postcard_status']) {
    es.addEventListener(kind, (e) => {
      if (addPostcard(st, parse(e.data))) onChange();
    });
  }
  // `coherence`: a barrio's coherence alarm raised (marked on the map and in the alarms banner)
  // or cleared (unmarked).
  es.addEventListener('coherence', (e) => {
    if (applyCoherence(st, parse(e.data))) onChange();
  });
  for (const kind of ['member', 'coordinate', 'lagged']) {
    es.addEventListener(kind, (e) => {
      const ev = parse(e.data);
      if (ev?.peer_id && kind === 'member') st.seen.set(ev.peer_id, performance.now());
      schedule();
    });
  }
  es.onerror = () => {
    // EventSource reconnects by itself; its next `ready` takes a fresh snapshot. A refusal
    // (401: no token) ends it for good: say so once the snapshot has told why.
    if (es.readyState === EventSource.CLOSED) refresh();
    st.stream = 'lost';
    onChange();
  };
  es.onopen = () => {
    st.stream = 'open';
    onChange();
  };
  setInterval(refresh, PERIODIC_MS);
  setInterval(refreshOverlay, OVERLAY_MS);
  refresh();
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
