// The live feed: one snapshot (`/v1/radar`) on load, then the node's event stream
// (`/v1/events`). Link, post and postcard events are applied at once; member and coordinate
// events only say *that* something changed, so they schedule a fresh snapshot (debounced). A
// slow periodic snapshot catches what events do not carry (coordinates of others move through
// pongs). The overlay (`/v1/overlay`: the link state peers publish, which changes at most every
// few tens of seconds per peer) is fetched on its own, on (re)subscription and every 10 s.

import { addPost, addPostcard, applyLink, applyOverlay, applySnapshot } from './state.js';

/** Fresh snapshot at most this often after change events (ms). */
const DEBOUNCE_MS = 700;
/** And at least this often regardless (ms). */
const PERIODIC_MS = 5000;
/** The overlay this often (ms). */
const OVERLAY_MS = 10000;

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
