/**
 * The dashboard page: plain HTML, CSS and browser JavaScript served as they are (no build step, nothing fetched from
 * elsewhere, so it works air-gapped). The script renders each state it receives on /events and appends log entries;
 * every name and capability is set as text, never as markup.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>concord dashboard</title>
<link rel="stylesheet" href="dashboard.css">
<script src="dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>concord</h1>
  <span id="url"></span>
  <span id="link" class="badge">connecting</span>
  <span id="session" class="badge"></span>
</header>
<p id="problem" hidden></p>
<main>
  <section id="groups-section"><h2>Groups</h2><div id="groups"></div></section>
  <section>
    <h2>Locks, semaphores and leaders</h2>
    <table id="locks">
      <thead><tr><th>name</th><th>kind</th><th>holder</th><th>mode</th><th>token</th><th>held</th><th>waiting</th><th>oldest waiter</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="locks-note" class="note"></p>
  </section>
  <section><h2>Events</h2><ol id="log"></ol></section>
</main>
</body>
</html>
`;

export const PAGE_CSS = `:root { color-scheme: light dark; --line: #8884; --dim: #888; font: 14px/1.4 system-ui, sans-serif; }
body { margin: 0 auto; max-width: 1100px; padding: 0 16px 24px; }
header { display: flex; gap: 12px; align-items: baseline; padding: 12px 0; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 15px; margin: 20px 0 8px; }
h3 { font-size: 14px; margin: 0 0 6px; display: flex; gap: 8px; align-items: baseline; }
#url, .note, time, .dim { color: var(--dim); }
.badge { border: 1px solid var(--line); border-radius: 9px; padding: 0 8px; font-size: 12px; }
.badge.live, .badge.connected { border-color: #2a2; color: #2a2; }
.badge.down, .badge.lost, .badge.suspended { border-color: #c33; color: #c33; }
#problem { color: #c33; }
#groups { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; }
.group { border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; font-size: 12px; color: var(--dim); }
code { font-size: 12px; overflow-wrap: anywhere; }
.member { white-space: nowrap; }
.group .leader { font-weight: 600; }
.mode.shared { color: #28c; }
.bar { display: flex; height: 14px; border-radius: 3px; overflow: hidden; margin: 8px 0 2px; }
.bar span { display: block; min-width: 2px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
#log { list-style: none; padding: 0; margin: 0; max-height: 320px; overflow-y: auto; font-family: ui-monospace, monospace; font-size: 12px; }
#log li { padding: 2px 0; border-bottom: 1px solid var(--line); }
#log .type { display: inline-block; width: 64px; font-weight: 600; }
.join .type, .acquire .type { color: #2a2; }
.leave .type, .release .type, .session .type { color: #c33; }
.handoff .type, .leader .type { color: #c80; }
`;

export const PAGE_JS = `'use strict';
const $ = (id) => document.getElementById(id);

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// FNV-1a of the id, spread round the colour wheel by the golden ratio: a member keeps its colour on every card.
function colour(id) {
  let hash = 0x811c9dc5;
  for (const char of id) hash = Math.imul(hash ^ char.codePointAt(0), 16777619);
  return 'hsl(' + Math.round((((hash >>> 0) * 0.6180339887) % 1) * 360) + ' 65% 48%)';
}

function swatch(id) {
  const node = el('span', { class: 'swatch' });
  node.style.background = colour(id);
  return node;
}

const percent = (share) => (share * 100).toFixed(1) + '%';

function renderGroup(group) {
  const bar = el('div', { class: 'bar', title: 'partition shares' });
  const rows = group.members.map((member) => {
    const part = el('span', { title: member.id + ' ' + percent(member.share) });
    part.style.width = percent(member.share);
    part.style.background = colour(member.id);
    bar.append(part);
    return el('tr', { 'data-member': member.id },
      el('td', { class: 'member' }, swatch(member.id), member.id),
      el('td', {}, el('code', {}, JSON.stringify(member.capabilities))),
      el('td', {}, String(member.weight)),
      el('td', { class: 'share' }, percent(member.share)));
  });
  const leader = group.leader
    ? el('div', { class: 'leader' }, 'leader ' + group.leader.member + ', term ' + group.leader.term)
    : el('div', { class: 'dim' }, 'no leader');
  const table = el('table', {},
    el('thead', {}, el('tr', {}, el('th', {}, 'member'), el('th', {}, 'capabilities'), el('th', {}, 'weight'), el('th', {}, 'share'))),
    el('tbody', {}, ...rows));
  return el('div', { class: 'group', 'data-group': group.name },
    el('h3', {}, group.name, el('span', { class: 'dim' }, group.members.length + (group.members.length === 1 ? ' member' : ' members'))),
    leader,
    group.members.length > 0 ? bar : '', table);
}

// One row per holder, oldest first; a semaphore's held column counts its permits against its limit.
function renderLock(lock) {
  const holders = lock.holders.length > 0 ? lock.holders : [{ member: '-', token: '-' }];
  const held = lock.kind === 'semaphore' ? lock.holders.length + '/' + lock.limit : String(lock.holders.length);
  return holders.map((holder, i) =>
    el('tr', { 'data-lock': lock.name, 'data-kind': lock.kind },
      el('td', {}, lock.name),
      el('td', {}, lock.kind),
      el('td', { class: 'holder' }, holder.member),
      el('td', { class: holder.shared ? 'mode shared' : 'mode' }, holder.shared === undefined ? '-' : holder.shared ? 'shared' : 'exclusive'),
      el('td', { class: 'token' }, holder.token),
      el('td', { class: 'held' }, i === 0 ? held : ''),
      el('td', { class: 'waiting' }, i === 0 ? String(lock.waiting) : ''),
      el('td', { class: 'oldest' }, i === 0 ? waiterText(lock.oldestWaiter) : '')));
}

function waiterText(waiter) {
  if (!waiter) return '';
  if (waiter.waitedMs === undefined) return waiter.member;
  const ms = waiter.waitedMs;
  return waiter.member + ' (' + (ms < 1000 ? Math.round(ms) + ' ms' : (ms / 1000).toFixed(1) + ' s') + ')';
}

function render(state) {
  $('url').textContent = state.url;
  $('session').textContent = 'session ' + state.session;
  $('session').className = 'badge ' + state.session;
  $('problem').hidden = !state.problem;
  $('problem').textContent = state.problem ?? '';
  $('groups').replaceChildren(...state.groups.map(renderGroup));
  $('locks').tBodies[0].replaceChildren(...state.locks.flatMap(renderLock));
  $('locks-note').textContent = state.locksListed
    ? 'Members and leaders are pushed as they change; locks are read again after each change and every ' + state.refreshMs + ' ms.'
    : 'This backend cannot list its locks: leaders come from watches, locks are not shown.';
}

function addEntry(entry) {
  const time = new Date(entry.time).toLocaleTimeString([], { hour12: false });
  $('log').prepend(el('li', { class: entry.type }, el('time', {}, time), ' ', el('span', { class: 'type' }, entry.type), entry.text));
  while ($('log').children.length > 500) $('log').lastChild.remove();
}

const events = new EventSource('events');
events.onopen = () => { $('link').textContent = 'live'; $('link').className = 'badge live'; };
events.onerror = () => { $('link').textContent = 'reconnecting'; $('link').className = 'badge down'; };
events.onmessage = (message) => {
  const { state, log, entries } = JSON.parse(message.data);
  if (log) $('log').replaceChildren();
  for (const entry of log ?? entries) addEntry(entry);
  render(state);
};
`;
