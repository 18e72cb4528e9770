// The live feed: one snapshot (`/v1/radar`) on load, then the node's event stream
// (`/v1/events`). Link and post events are applied at once; member and coordinate events only
// say *that* something changed, so they schedule a fresh snapshot (debounced). A slow periodic
// snapshot catches what events do not carry (coordinates of others move through pongs).

import { addPost, applyLink, applySnapshot } from './state.js';

/** Fresh snapshot at most this often after change events (ms). */
const DEBOUNCE_MS = 700;
/** And at least this often regardless (ms). */
const PERIODIC_MS = 5000;

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

  const es = new EventSource('/v1/events');
  es.addEventListener('ready', () => {
    st.stream = 'open';
    // Subscribed: nothing after this point is missed, so take the snapshot now.
    refresh();
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
  for (const kind of ['member', 'coordinate', 'lagged']) {
    es.addEventListener(kind, (e) => {
      const ev = parse(e.data);
      if (ev?.peer_id && kind === 'member') st.seen.set(ev.peer_id, performance.now());
      schedule();
    });
  }
  es.onerror = () => {
    // EventSource reconnects by itself; its next `ready` takes a fresh snapshot.
    st.stream = 'lost';
    onChange();
  };
  es.onopen = () => {
    st.stream = 'open';
    onChange();
  };
  setInterval(refresh, PERIODIC_MS);
  refresh();
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
