// The text around the map: header counts, the banner, the peer card, barrios and posts. Each
// part is re-rendered only when the state's version moved (or, for ages, once a second). The
// postcards panel is in postcards.js.

import { alarmLines, barrioColor, linkCounts } from './state.js';

const $ = (id) => document.getElementById(id);

/** Text-only element builder (never innerHTML with data from the network). */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'style') e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ''));
  return e;
}

export const short = (id) => (id && id.length > 14 ? `…${id.slice(-8)}` : id || '?');
const ms = (v) => (typeof v === 'number' ? `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms` : 'n/a');

export function renderHeader(st, fps) {
  const me = st.peers.get(st.selfId);
  const viewer = $('viewer');
  viewer.replaceChildren('viewing as ', h('b', {}, me?.name || st.selfName || short(st.selfId)),
    st.mode === 'demo' ? ' · demo' : '');
  const n = linkCounts(st);
  $('stats').replaceChildren(
    h('span', {}, h('b', { id: 'peer-count' }, st.peers.size), ' peers'),
    h('span', {}, h('b', {}, st.barrios.size), ' barrios'),
    h('span', {}, h('b', { style: 'color: var(--connected)' }, n.connected), ' / ',
      h('b', { style: 'color: var(--suspected)' }, n.suspected), ' / ',
      h('b', { style: 'color: var(--disconnected)' }, n.disconnected), ' links'),
  );
  document.querySelector('.brand .dot').classList.toggle('off', st.stream === 'lost');
  $('fps').textContent = fps ? `${fps} fps` : '';
}

/** The banner: the viewer's own links suspected or partitioned, or the stream lost. */
export function renderBanner(st) {
  const b = $('banner');
  const n = linkCounts(st);
  let text = '';
  let cls = '';
  if (st.stream === 'unauthorized') {
    text = 'This node’s API needs a token: open the page as /?token=… (the token is in '
      + 'api-read.token in the node’s data directory)';
    cls = 'partitioned';
  } else if (st.stream === 'lost') {
    text = 'Lost the node’s event stream — reconnecting…';
    cls = 'partitioned';
  } else if (n.connected === 0 && n.suspected + n.disconnected > 0) {
    text = n.suspected > 0
      ? `Partitioned: no connected links, ${n.suspected} suspected (buffering, not dropping)`
      : 'Partitioned: every link of this peer is disconnected';
    cls = 'partitioned';
  } else if (n.suspected > 0) {
    text = `${n.suspected} of this peer’s links ${n.suspected === 1 ? 'is' : 'are'} suspected — messages are buffered until it heals`;
  } else if (n.disconnected > 0 && n.connected > 0) {
    text = `${n.disconnected} link${n.disconnected === 1 ? '' : 's'} disconnected`;
  }
  b.hidden = !text;
  b.className = `banner ${cls}`;
  b.dataset.state = cls || (text ? 'suspected' : 'ok');
  if (b.textContent !== text) b.textContent = text;
}

/** The alarms banner: one line per barrio whose coherence alarm is raised. */
export function renderAlarms(st) {
  const box = $('alarms');
  const lines = alarmLines(st);
  box.hidden = lines.length === 0;
  const text = lines.join('\n');
  if (box.dataset.text !== text) {
    box.dataset.text = text;
    box.replaceChildren(...lines.map((l) => h('div', { class: 'alarm-line' }, l)));
  }
}

export function renderDetails(st, now) {
  const card = $('details');
  const p = st.peers.get(st.selected);
  if (!p) {
    card.replaceChildren(h('h2', {}, 'Peer'), h('p', { class: 'hint' }, 'Tap a peer on the map.'));
    return;
  }
  const b = st.barrios.get(p.barrio);
  const seen = st.seen.get(p.id);
  const np = p.newspaper;
  const rows = [
    ['link', p.self ? h('span', { class: 'pill none' }, 'this peer')
      : h('span', { class: `pill ${p.link || 'none'}` }, p.link || 'not a neighbour')],
    ['barrio', b ? h('span', { style: `color: ${barrioColor(b.id)}` }, `${b.emoji} ${b.name}`) : 'n/a'],
    ['measured RTT', p.self ? '—' : ms(p.rtt)],
    ['predicted RTT', p.self ? '—' : ms(p.est)],
    ['coord. error', typeof p.error === 'number' ? p.error.toFixed(3) : 'n/a'],
    ['height', ms(p.height)],
    ['status', p.self ? h('span', { class: 'pill none' }, 'this peer') : liveness(p, opinionOf(st, p))],
    ['clout', clout(p.clout)],
    ['newspaper', np ? `up ${duration(np.uptime_s)}, ${np.connected} links, ${np.restarts} restarts` : p.self ? 'this peer' : 'none yet'],
    ['updated', seen != null ? `${duration((now - seen) / 1000)} ago` : 'n/a'],
    ['membership', p.left ? 'left (said chau)' : 'alive'],
  ];
  card.replaceChildren(
    h('h2', {}, p.self ? 'This peer' : 'Peer'),
    h('p', { class: 'name' }, p.name || short(p.id)),
    h('div', { class: 'pid' }, p.id),
    h('dl', {}, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    ...(p.self ? [] : whoSaysWhat(st, p)),
  );
}

/** The viewer's opinion of `p` when it has been fetched (`/v1/opinions?peer=`). */
function opinionOf(st, p) {
  return st.opinion?.peer === p.id ? st.opinion : null;
}

/** The status pill, with the clout saying each way when the opinion is at hand. */
function liveness(p, op) {
  const status = op?.data ? op.data.status : p.liveness;
  const pill = h('span', { class: `pill ${status || 'none'}`, 'data-liveness': status || 'unknown' },
    status || 'unknown');
  if (!op?.data || !status) return status ? pill : h('span', {}, pill, ' nobody observes it yet');
  const w = (v) => (typeof v === 'number' ? v.toFixed(2) : '?');
  return h('span', {}, pill, ` clout ${w(op.data.weight_online)} says online, ${w(op.data.weight_offline)} offline`);
}

/** A clout with its parts (the viewer's trust in a peer as an observer). */
function clout(c) {
  if (!c || typeof c.value !== 'number') return 'n/a (observes nothing held here)';
  const f = (v, d) => (typeof v === 'number' ? v.toFixed(d) : '?');
  return `${f(c.value, 3)} (tenure ${f(c.tenure, 2)} × agreement ${f(c.agreement, 2)} × proximity ${f(c.proximity, 1)})`;
}

/** "Who says what": every observer's claim about `p`, with its clout here, weightiest first. */
function whoSaysWhat(st, p) {
  const op = opinionOf(st, p);
  const title = h('h3', {}, 'Who says what');
  if (st.mode === 'demo') return [title, h('p', { class: 'hint' }, 'n/a in the demo')];
  if (!op) return [title, h('p', { class: 'hint' }, 'asking the node…')];
  if (!op.data) return [title, h('p', { class: 'hint' }, op.error || 'no answer')];
  const claims = Array.isArray(op.data.claims) ? [...op.data.claims] : [];
  if (claims.length === 0) return [title, h('p', { class: 'hint' }, 'no observer has made a claim about it yet')];
  const value = (c) => (typeof c?.clout?.value === 'number' ? c.clout.value : 0);
  claims.sort((a, b) => value(b) - value(a));
  const nowMs = Date.now();
  const list = h('ul', { class: 'claims', id: 'claims' }, ...claims.map((c) => {
    const ob = c.observer || {};
    const says = c.online ? 'online' : 'offline';
    const who = `${ob.name || short(ob.peer_id)}${ob.self ? ' (this peer)' : ''}`;
    const more = [
      ob.self ? 'own eyes: as much as the most trusted other observer'
        : `tenure ${fmt(c.clout?.tenure, 2)} × agreement ${fmt(c.clout?.agreement, 2)} × proximity ${fmt(c.clout?.proximity, 1)}`,
      c.online ? `up ${duration(c.uptime_s)}` : c.stands ? 'counts' : 'older than its own last word: does not count',
      `${c.restarts ?? '?'} restarts`,
      typeof c.at_ms === 'number' ? `said ${duration(Math.max(0, nowMs - c.at_ms) / 1000)} ago` : '',
    ].filter(Boolean).join(' · ');
    return h('li', { 'data-observer': ob.peer_id || '', 'data-says': says, class: c.online || c.stands ? '' : 'old' },
      h('span', { class: 'who', title: ob.peer_id || '' }, who),
      h('span', { class: `pill ${says}` }, says),
      h('span', { class: 'clout', title: 'clout here' }, fmt(c.clout?.value, 3)),
      h('span', { class: 'more' }, more));
  }));
  return [title, list];
}

const fmt = (v, d) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '?');

function duration(s) {
  if (typeof s !== 'number' || !Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function renderBarrios(st) {
  const list = [...st.barrios.values()].sort((a, b) => b.members.length - a.members.length);
  $('barrios').replaceChildren(...list.slice(0, 30).map((b) => h('li', {
    style: `border-color: ${barrioColor(b.id, 0.6)}; color: ${barrioColor(b.id)}`,
    title: b.id,
  }, `${st.alarms.has(b.id) ? '⚠ ' : ''}${b.emoji} ${b.name} · ${b.members.length}${b.own ? ' · yours' : ''}`)));
}

export function renderPosts(st) {
  const names = new Map([...st.peers.values()].map((p) => [p.id, p.name]));
  $('posts').replaceChildren(...st.posts.slice(0, 30).map((p) => h('li', { class: p.own ? 'own' : '', 'data-id': p.id },
    h('div', { class: 'meta' }, h('span', { class: 'topic' }, `#${p.topic}`),
      h('span', {}, p.own ? 'you' : names.get(p.peer_id) || short(p.peer_id)),
      h('span', {}, p.hlc_ms ? new Date(p.hlc_ms).toLocaleTimeString() : '')),
    h('div', { class: 'text' }, p.text))));
}

export function renderScale(frame) {
  const ring = frame.rings[0];
  if (!ring) return;
  $('scale').replaceChildren(h('i', { style: `width: ${Math.round(ring.r)}px` }), ring.label);
}
