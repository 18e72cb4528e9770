// The postcards panel: the inbox (received here) and the sent box (with where each one
// stands), newest first, kept live by the `postcard` and `postcard_status` events. Selecting a
// postcard draws its path on the map hop by hop (layout.js). A small form sends one to a member
// (`POST /v1/postcards`). Postcard text is user content: it only ever goes in as text.

import { h, short } from './panel.js';
import { addPostcard, cardKey, pathOf, postcardsOf, selectPostcard } from './state.js';

const $ = (id) => document.getElementById(id);
/** Longest text the form sends, in characters (the node takes up to 48 KiB). */
const MAX_TEXT = 1000;

const STATUS_TEXT = {
  received: 'received',
  custody: 'held here',
  forwarded: 'on its way',
  delivered: 'delivered',
  expired: 'expired',
};

let listed = '';
let options = '';
let formPeer = null;

/** Wires the lists (select a postcard) and the form (send one); call once. */
export function startPostcards(st) {
  for (const box of ['inbox', 'sent']) {
    const list = $(box);
    // Delegated: the items are rebuilt when records change.
    list.addEventListener('click', (ev) => pick(st, ev));
    list.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        pick(st, ev);
      }
    });
  }
  const form = $('pc-form');
  if (st.mode === 'demo') {
    form.hidden = true;
    return;
  }
  $('pc-text').maxLength = MAX_TEXT;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const to = $('pc-to').value;
    const text = $('pc-text').value;
    const button = form.querySelector('button');
    if (!to || !text.trim()) return showError('Pick a peer and write something.');
    button.disabled = true;
    showError('');
    try {
      const res = await fetch('/v1/postcards', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to, text }),
      });
      const body = await res.json().catch(() => null);
      if (!res.ok) {
        showError(body?.error || `the node answered ${res.status}`);
        return;
      }
      $('pc-text').value = '';
      // The record (status custody); the stream brings the same one and what follows.
      addPostcard(st, body);
    } catch (e) {
      showError(`could not reach the node: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  });
}

function showError(text) {
  const e = $('pc-error');
  e.hidden = !text;
  e.textContent = text;
}

function pick(st, ev) {
  const li = ev.target.closest('li[data-key]');
  if (!li) return;
  const key = li.dataset.key;
  selectPostcard(st, st.card === key ? null : key);
}

/** Both lists and the form's peers; redrawn only when something they show changed (a list
 * rebuilt under the pointer would lose a click). */
export function renderPostcards(st) {
  // Looked up, not mapped: in the demo this runs on every frame over thousands of peers.
  const name = (id) => {
    const p = st.peers.get(id);
    return (p?.self ? `${p.name || 'this peer'} (you)` : p?.name) || short(id);
  };
  renderForm(st);
  const boxes = { inbox: postcardsOf(st, 'inbox'), sent: postcardsOf(st, 'sent') };
  // The names the lists show are part of what they show.
  const shown = [];
  for (const r of [...boxes.inbox, ...boxes.sent]) shown.push(name(r.peer_id), ...pathOf(r).map(name));
  const key = `${st.cardsVersion} ${st.card} ${shown.join(',')}`;
  if (key === listed) return;
  listed = key;
  for (const [box, records] of Object.entries(boxes)) {
    $(`${box}-count`).textContent = records.length ? ` · ${records.length}` : '';
    const items = records.map((r) => item(st, r, name));
    if (items.length === 0) {
      items.push(h('li', { class: 'empty' }, box === 'inbox' ? 'Nothing received yet.' : 'Nothing sent yet.'));
    }
    $(box).replaceChildren(...items);
  }
}

function item(st, r, name) {
  const key = cardKey(r);
  const selected = st.card === key;
  const path = pathOf(r);
  const hops = path.length - 1;
  const when = r.box === 'inbox' ? r.sent_ms : r.updated_ms;
  const li = h('li', {
    class: `pc ${selected ? 'selected' : ''}`,
    'data-key': key,
    'data-id': r.id,
    'data-box': r.box,
    'data-status': r.status,
    'data-hops': hops > 0 ? hops : '',
    tabindex: 0,
    role: 'button',
    'aria-pressed': selected ? 'true' : 'false',
    title: hops > 0 ? 'show its path on the map' : 'its path is known once it is delivered',
  },
  h('div', { class: 'meta' },
    h('span', { class: 'who' }, r.box === 'inbox' ? `from ${name(r.peer_id)}` : `to ${name(r.peer_id)}`),
    h('span', { class: `pill pc-${r.status}` }, STATUS_TEXT[r.status] || String(r.status)),
    hops > 0 ? h('span', {}, `${hops} hop${hops === 1 ? '' : 's'}`) : '',
    h('span', {}, typeof when === 'number' ? new Date(when).toLocaleTimeString() : '')),
  h('div', { class: 'text' }, r.text));
  if (selected && path.length > 1) {
    const steps = h('ol', { class: 'path', 'aria-label': 'path, author to destination' });
    path.forEach((id, i) => steps.append(h('li', { 'data-peer': id, title: id },
      i === 0 ? '' : h('b', {}, String(i)), name(id))));
    li.append(steps);
  }
  return li;
}

/** The form's peers: every member but this one and those that left, by name; a peer picked on
 * the map becomes the destination. */
function renderForm(st) {
  const select = $('pc-to');
  if (!select || st.mode === 'demo') return;
  const peers = [...st.peers.values()].filter((p) => !p.self && !p.left)
    .sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id));
  const sig = peers.map((p) => `${p.id}=${p.name}`).join(',');
  if (sig !== options) {
    options = sig;
    const keep = select.value;
    select.replaceChildren(h('option', { value: '' }, 'to…'),
      ...peers.map((p) => h('option', { value: p.id }, p.name || short(p.id))));
    if (peers.some((p) => p.id === keep)) select.value = keep;
  }
  const picked = st.peers.get(st.selected);
  if (st.selected !== formPeer) {
    formPeer = st.selected;
    if (picked && !picked.self && !picked.left) select.value = picked.id;
  }
}
