// The operations page: consumer lag, apply rate, outbox backlog, pending
// transfers, stale accounts, dead letters (with replay) and the
// reconciler's decisions, refreshed every two seconds.
import {
  api, ApiError, h, setText, setData, session, syncChildren, makeRefresher,
  formatWon, formatNumber, formatRate, formatTime, formatWhen, formatFull, formatDuration, parseTime,
} from './common.js';

const TOKEN_KEY = 'banksync.ops.token';
const REFRESH_MS = 2000;
const DLQ_REFRESH_MS = 10000;

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  epoch: 0,
  serverOffset: 0, // server clock minus ours, from overview.at
  replaying: new Set(), // accounts being replayed
  dlqAt: 0, // when the dead letters were last read
  dlqDue: true, // read them at the next refresh
  replayingAll: false,
  lastOk: null,
};

// ---------------------------------------------------------------- start

function start() {
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
    if (!token) return;
    $('token-input').value = '';
    useToken(token);
  });
  $('change-token').addEventListener('click', () => askToken(''));
  $('replay-all').addEventListener('click', () => replay({ all: true }, null));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.token) refreshNow();
  });
  setInterval(tickCountdowns, 1000);
  window.addEventListener('hashchange', () => {
    const token = tokenFromHash();
    if (token) useToken(token);
  });

  const fromHash = tokenFromHash();
  if (fromHash) {
    useToken(fromHash);
    return;
  }
  const stored = session.get(TOKEN_KEY);
  if (stored) useToken(stored);
  else askToken('');
}

/** tokenFromHash reads #token=… and removes it from the address bar. */
function tokenFromHash() {
  const raw = location.hash.replace(/^#/, '');
  if (!raw) return null;
  const token = new URLSearchParams(raw).get('token');
  if (token === null) return null;
  history.replaceState(history.state, '', location.pathname + location.search);
  return token.trim() || null;
}

function useToken(token) {
  state.epoch++;
  state.token = token;
  session.set(TOKEN_KEY, token);
  $('token-box').hidden = true;
  $('dashboard').hidden = false;
  $('change-token').hidden = false;
  showNotice($('token-message'), '');
  refreshNow();
}

function askToken(message) {
  state.epoch++;
  state.token = null;
  refresher?.stop();
  session.remove(TOKEN_KEY);
  $('dashboard').hidden = true;
  $('change-token').hidden = true;
  $('token-box').hidden = false;
  showNotice($('token-message'), message);
  setData($('updated-at'), 'state', '');
  setText($('updated-at'), 'Signed out');
  $('token-input').focus();
}

function showNotice(node, message) {
  setText(node, message || '');
  node.hidden = !message;
}

// ---------------------------------------------------------------- refresh

let refresher = null;

/** refreshNow reads the overview and the dead letters, now and every REFRESH_MS. */
function refreshNow() {
  refresher ??= makeRefresher(state, refreshOnce, REFRESH_MS);
  return refresher();
}

async function refreshOnce(epoch) {
  const token = state.token;
  // The dead letters are read from Kafka: less often than the overview,
  // and at once after a replay.
  const dlqDue = state.dlqDue || Date.now() - state.dlqAt >= DLQ_REFRESH_MS;
  const [ov, dlq] = await Promise.allSettled([
    api('/admin/v1/overview', { token, timeout: 10000 }),
    dlqDue ? api('/admin/v1/dlq', { token, timeout: 10000 }) : Promise.resolve(null),
  ]);
  if (epoch !== state.epoch) return;
  if (dlqDue && dlq.status === 'fulfilled') {
    state.dlqDue = false;
    state.dlqAt = Date.now();
  }
  for (const r of [ov, dlq]) {
    if (r.status === 'rejected' && r.reason instanceof ApiError && (r.reason.status === 401 || r.reason.status === 403)) {
      askToken(`The server refused this token (${r.reason.status}: ${r.reason.message}). Enter the admin token.`);
      return;
    }
  }
  const errors = [];
  if (ov.status === 'fulfilled') renderOverview(ov.value.data, Date.now());
  else errors.push(['Overview', message(ov.reason)]);
  if (dlq.status === 'fulfilled') {
    if (dlq.value) renderDeadLetters(dlq.value.data);
  }
  else errors.push(['Dead letters', message(dlq.reason)]);

  const updated = $('updated-at');
  const now = new Date();
  if (errors.length) {
    const text = errors.length === 2 && errors[0][1] === errors[1][1]
      ? 'Could not refresh: ' + errors[0][1]
      : errors.map(([what, msg]) => `Could not refresh ${what.toLowerCase()}: ${msg}`).join(' ');
    const last = state.lastOk ? ' Showing data from ' + formatTime(state.lastOk) + '.' : '';
    showNotice($('ops-error'), text + last);
    setData(updated, 'state', 'error');
    setText(updated, 'Update failed · ' + formatTime(now));
  } else {
    state.lastOk = now;
    showNotice($('ops-error'), '');
    setData(updated, 'state', 'ok');
    setText(updated, 'Updated ' + formatTime(now));
  }
  updated.title = state.lastOk ? 'Last good update ' + formatFull(state.lastOk) : '';
}

function message(err) {
  return err instanceof ApiError ? err.message : String(err && err.message ? err.message : err);
}

function arr(v) {
  return Array.isArray(v) ? v : [];
}

function num(v) {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

function serverNow() {
  return Date.now() + state.serverOffset;
}

// ---------------------------------------------------------------- overview

function renderOverview(ov, receivedAt) {
  ov = ov || {};
  const at = parseTime(ov.at);
  if (at) state.serverOffset = at.getTime() - receivedAt;

  renderConsumer(ov.consumer);

  const applied = ov.applied || {};
  setText($('applied-rate'), formatRate(applied.per_second) + '/s');
  // The rate and the reconciler's decisions are the answering replica's;
  // the rest is the whole group's.
  const replica = typeof ov.replica === 'string' ? ov.replica : '';
  setText($('applied-total'), formatNumber(applied.total) + ' applied in total' + (replica ? ' · replica ' + replica : ''));
  setText($('reconciler-replica'), replica ? 'On replica ' + replica : '');

  const outbox = ov.outbox || {};
  const backlog = num(outbox.backlog);
  setText($('outbox-backlog'), formatNumber(backlog));
  setData($('outbox-card'), 'level', outbox.error ? 'bad' : backlog > 1000 ? 'warn' : '');
  showNotice($('outbox-error'), outbox.error ? 'Outbox: ' + outbox.error : '');

  renderPending(arr(ov.pending_transfers));
  renderStale(arr(ov.stale_accounts));
  renderReconciler(arr(ov.reconciler));
}

function renderConsumer(c) {
  const table = $('partitions');
  if (!c) {
    setText($('lag-total'), '—');
    setText($('consumer-info'), 'This channel consumes no Kafka');
    setText($('consumer-group'), '');
    setData($('lag-card'), 'level', '');
    showNotice($('consumer-error'), '');
    table.hidden = true;
    showNotice($('partitions-empty'), 'No Kafka consumer in this channel.');
    syncChildren(table.tBodies[0], [], () => '', () => h('tr'), () => {});
    return;
  }
  const lag = num(c.lag);
  setText($('lag-total'), formatNumber(lag));
  setText($('consumer-info'), [c.group, c.topic].filter(Boolean).join(' · '));
  setText($('consumer-group'), c.group ? String(c.group) : '');
  setData($('lag-card'), 'level', c.error ? 'bad' : lag > 1000 ? 'warn' : '');
  showNotice($('consumer-error'), c.error ? 'Consumer: ' + c.error : '');

  const parts = arr(c.partitions).filter((p) => p && Number.isFinite(Number(p.partition)))
    .sort((a, b) => num(a.partition) - num(b.partition));
  const maxLag = parts.reduce((m, p) => Math.max(m, num(p.lag)), 0);
  table.hidden = false;
  showNotice($('partitions-empty'), parts.length ? '' : 'No partitions assigned.');
  syncChildren(table.tBodies[0], parts, (p) => p.partition, () => h('tr', {},
    h('td', {}),
    h('td', { class: 'num' }),
    h('td', { class: 'num' }),
    h('td', { class: 'num' },
      h('div', { class: 'lag-cell' },
        h('div', { class: 'bar', 'aria-hidden': 'true' }, h('div', { class: 'bar-fill' })),
        h('span', { class: 'lag-value' })))), (tr, p) => {
    const l = num(p.lag);
    setData(tr, 'partition', p.partition);
    setData(tr, 'lag', l);
    setText(tr.cells[0], String(p.partition));
    setText(tr.cells[1], p.committed < 0 ? '—' : formatNumber(p.committed)); // -1: nothing committed yet
    setText(tr.cells[2], formatNumber(p.end));
    const fill = tr.cells[3].querySelector('.bar-fill');
    fill.style.width = (maxLag > 0 ? Math.max(l > 0 ? 2 : 0, (l / maxLag) * 100) : 0) + '%';
    setData(fill, 'level', l > 1000 ? 'bad' : l > 100 ? 'warn' : '');
    setText(tr.cells[3].querySelector('.lag-value'), formatNumber(l));
  });
}

function timeLeftText(deadline) {
  const d = parseTime(deadline);
  if (!d) return { text: '—', overdue: false };
  const ms = d.getTime() - serverNow();
  if (ms < 0) return { text: '\u2212' + formatDuration(ms) + ' overdue', overdue: true };
  return { text: formatDuration(ms), overdue: false };
}

function renderPending(list) {
  const items = list.filter((t) => t && typeof t.transfer_id === 'string')
    .sort((a, b) => String(a.deadline).localeCompare(String(b.deadline)));
  setText($('pending-count'), formatNumber(items.length));
  $('pending-empty').hidden = items.length > 0;
  syncChildren($('pending').tBodies[0], items, (t) => t.transfer_id, () => h('tr', {},
    h('td', { class: 'mono wrap', 'data-label': 'Transfer' }),
    h('td', { class: 'wrap', 'data-label': 'From → to' }),
    h('td', { class: 'num', 'data-label': 'Amount' }),
    h('td', { class: 'nowrap', 'data-label': 'Deadline' }),
    h('td', { class: 'num time-left', 'data-label': 'Time left' })), (tr, t) => {
    setData(tr, 'transfer', t.transfer_id);
    setData(tr, 'deadline', t.deadline || '');
    setText(tr.cells[0], t.transfer_id);
    setText(tr.cells[1], `${t.from_account || '?'} → ${t.to_account || '?'}`);
    setText(tr.cells[2], formatWon(t.amount));
    setText(tr.cells[3], formatWhen(t.deadline));
    tr.cells[3].title = formatFull(t.deadline);
    tr.cells[1].title = t.memo ? 'Memo: ' + t.memo : '';
  });
  tickCountdowns();
}

/** tickCountdowns updates every pending transfer's time left. */
function tickCountdowns() {
  let overdue = 0;
  const rows = $('pending').tBodies[0].rows;
  for (const tr of rows) {
    const left = timeLeftText(tr.dataset.deadline);
    if (left.overdue) overdue++;
    tr.classList.toggle('overdue', left.overdue);
    setData(tr, 'overdue', left.overdue ? 'true' : 'false');
    setText(tr.cells[4], left.text);
  }
  setText($('pending-overdue'), overdue ? `${overdue} overdue` : rows.length ? 'all within deadline' : '');
  setData($('pending-card'), 'level', overdue ? 'bad' : '');
}

function renderStale(list) {
  const items = list.filter((s) => s && typeof s.account_id === 'string');
  setText($('stale-count'), formatNumber(items.length));
  setData($('stale-card'), 'level', items.length ? 'warn' : '');
  $('stale-empty').hidden = items.length > 0;
  syncChildren($('stale'), items, (s) => s.account_id, () => h('li', {},
    h('strong', { class: 'mono' }),
    h('span', { class: 'item-since' }),
    h('span', { class: 'muted' })), (li, s) => {
    setData(li, 'account', s.account_id);
    setText(li.children[0], s.account_id);
    const since = parseTime(s.stale_since);
    setText(li.children[1], since ? 'since ' + formatWhen(since) + ' (' + formatDuration(serverNow() - since.getTime()) + ')' : '');
    li.children[1].title = since ? formatFull(since) : '';
    setText(li.children[2], 'synced through #' + num(s.synced_through_seq));
  });
}

const ACTION_BADGES = { fenced: 'badge-warn', repaired: 'badge-ok', repair_failed: 'badge-bad' };

function renderReconciler(list) {
  const items = list.filter((r) => r && typeof r === 'object')
    .map((r, i) => ({ r, i, t: parseTime(r.at) }))
    .sort((a, b) => (b.t ? b.t.getTime() : 0) - (a.t ? a.t.getTime() : 0) || a.i - b.i)
    .map((x) => x.r);
  $('reconciler-empty').hidden = items.length > 0;
  const key = (r) => [r.at, r.action, r.transfer_id, r.account_id, r.outcome, r.detail, r.count].join('|');
  syncChildren($('reconciler'), items, key, (r) => {
    const parts = [
      h('time', { class: 'item-time', datetime: r.at || '', title: formatFull(r.at) }, formatWhen(r.at)),
      h('span', { class: 'badge ' + (ACTION_BADGES[r.action] || '') }, String(r.action || 'decision').replace(/_/g, ' ')),
    ];
    if (r.transfer_id) parts.push(h('span', { class: 'mono' }, String(r.transfer_id)));
    if (r.account_id) parts.push(h('span', {}, 'account ', h('span', { class: 'mono' }, String(r.account_id))));
    if (r.outcome) parts.push(h('span', {}, '→ ', h('strong', {}, String(r.outcome))));
    if (r.detail) parts.push(h('span', { class: 'item-detail' }, String(r.detail)));
    if (num(r.count) > 1) parts.push(h('span', { class: 'item-detail' }, `${num(r.count)} times in a row, last at ${formatTime(r.at)}`));
    return h('li', { dataset: { action: r.action || '' } }, parts);
  }, () => {});
}

// ---------------------------------------------------------------- dead letters

function renderDeadLetters(data) {
  const items = arr(data && data.dead_letters).filter((d) => d && typeof d.account_id === 'string');
  // Waiting: neither replayed nor parked, and not in the history by
  // another way. Parked letters cannot be decoded; they stay listed for an
  // operator to read, but need nothing more.
  const waiting = items.filter((d) => !d.replayed && !d.in_history);
  const parked = items.filter((d) => d.state === 'parked').length;
  setText($('dlq-count'), formatNumber(waiting.length));
  const done = items.length - waiting.length - parked;
  setText($('dlq-sub'), items.length ? `waiting · ${formatNumber(parked)} parked · ${formatNumber(done)} replayed or in history` : 'none');
  setData($('dlq-card'), 'level', waiting.length ? 'bad' : parked ? 'warn' : '');
  $('dead-letters-empty').hidden = items.length > 0;
  const sorted = items.map((d, i) => ({ d, i }))
    .sort((a, b) => Number(!!a.d.replayed) - Number(!!b.d.replayed) || a.i - b.i)
    .map((x) => x.d);
  const key = (d) => [d.dlq_partition, d.dlq_offset, d.account_id, d.seq, d.event_id].join('|');
  syncChildren($('dead-letters').tBodies[0], sorted, key, () => h('tr', {},
    h('td', { class: 'mono', 'data-label': 'Account' }),
    h('td', { class: 'num', 'data-label': 'Seq' }),
    h('td', { class: 'wrap wide', 'data-label': 'Reason' }),
    h('td', { class: 'num', 'data-label': 'Attempts' }),
    h('td', { class: 'nowrap', 'data-label': 'When' }),
    h('td', { class: 'num', 'data-label': 'Partition / offset' }),
    h('td', { 'data-label': 'State' }, h('span', { class: 'badge' })),
    h('td', { 'data-label': '' })), (tr, d) => {
    const replayed = !!d.replayed;
    const undecodable = typeof d.undecodable === 'string' && d.undecodable !== '';
    setData(tr, 'account', d.account_id);
    setData(tr, 'seq', num(d.seq));
    setData(tr, 'replayed', replayed ? 'true' : 'false');
    setData(tr, 'state', String(d.state || ''));
    setData(tr, 'inHistory', d.in_history ? 'true' : 'false');
    // A letter that cannot be decoded shows its raw key, quoted.
    setText(tr.cells[0], d.account_id || JSON.stringify(String(d.key || '')));
    setText(tr.cells[1], undecodable ? '—' : String(num(d.seq)));
    // The consumer's reason for a letter it could not decode repeats why;
    // say it once.
    const reason = d.reason ? String(d.reason) : '';
    setText(tr.cells[2], undecodable
      ? `Cannot be decoded: ${d.undecodable}` + (reason && !reason.includes(d.undecodable) ? ` (${reason})` : '')
      : reason || '—');
    setText(tr.cells[3], String(num(d.attempts)));
    setText(tr.cells[4], d.dead_lettered_at ? formatWhen(d.dead_lettered_at) : '—');
    tr.cells[4].title = formatFull(d.dead_lettered_at);
    setText(tr.cells[5], `${num(d.from_partition)} / ${formatNumber(d.from_offset)}`);
    tr.cells[5].title = `event ${num(d.event_id)}; dead-letter topic ${num(d.dlq_partition)} / ${formatNumber(d.dlq_offset)}`;
    const badge = tr.cells[6].firstChild;
    // Replayed: a replay applied it. Parked: it cannot be decoded; its
    // account was synced from core instead. In history: its entry reached
    // the history another way (the reconciler's repair, a later event).
    // Held: a replay could not apply it yet; the channel tries again on
    // its own.
    const label = d.state === 'parked' ? 'Parked' : replayed ? 'Replayed' : d.in_history ? 'In history' : d.state === 'held' ? 'Held' : 'Waiting';
    setText(badge, label);
    badge.className = 'badge ' + (d.state === 'parked' ? 'badge-warn' : replayed || d.in_history ? 'badge-ok' : 'badge-bad');

    const cell = tr.cells[7];
    let btn = cell.querySelector('button.replay');
    if (replayed || undecodable || !d.account_id) {
      if (btn) btn.remove();
      return;
    }
    if (!btn) {
      btn = h('button', { type: 'button', class: 'button button-small replay' });
      btn.addEventListener('click', () => replay({ account: btn.dataset.account }, btn.dataset.account));
      cell.appendChild(btn);
    }
    setData(btn, 'account', d.account_id);
    btn.title = 'Replay the dead letters of ' + d.account_id;
    const busy = state.replayingAll || state.replaying.has(d.account_id);
    btn.disabled = busy;
    setText(btn, busy ? 'Replaying…' : 'Replay');
  });
  $('replay-all').disabled = state.replayingAll || waiting.length === 0;
}

function setMessage(st, text) {
  const node = $('ops-message');
  setData(node, 'state', st);
  showNotice(node, text);
}

async function replay(body, account) {
  if (!state.token) return;
  if (account ? state.replaying.has(account) || state.replayingAll : state.replayingAll) return;
  const epoch = state.epoch;
  if (account) state.replaying.add(account);
  else state.replayingAll = true;
  markBusy();
  setMessage('busy', account ? `Replaying ${account}…` : 'Replaying all dead letters…');
  try {
    const { data } = await api('/admin/v1/dlq/replay', { method: 'POST', token: state.token, json: body, timeout: 60000 });
    if (epoch !== state.epoch) return;
    const n = num(data && data.applied);
    const held = num(data && data.held);
    const parkedNow = num(data && data.parked);
    let text = `Replayed ${formatNumber(n)} record${n === 1 ? '' : 's'}` + (account ? ` for ${account}` : '');
    if (parkedNow) text += `; parked ${formatNumber(parkedNow)} that cannot be decoded`;
    if (held) text += `; ${formatNumber(held)} still failing, held (the channel tries again on its own)`;
    setMessage(held ? 'error' : 'ok', text + '.');
  } catch (err) {
    if (epoch !== state.epoch) return;
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      askToken(`The server refused this token (${err.status}: ${err.message}). Enter the admin token.`);
      return;
    }
    setMessage('error', 'Replay failed: ' + message(err));
  } finally {
    if (account) state.replaying.delete(account);
    else state.replayingAll = false;
    if (epoch === state.epoch) {
      markBusy();
      state.dlqDue = true;
      refreshNow();
    }
  }
}

/** markBusy brings the replay buttons' disabled state up to date at once. */
function markBusy() {
  for (const btn of document.querySelectorAll('#dead-letters button.replay')) {
    const busy = state.replayingAll || state.replaying.has(btn.dataset.account);
    btn.disabled = busy;
    setText(btn, busy ? 'Replaying…' : 'Replay');
  }
  if (state.replayingAll) $('replay-all').disabled = true;
  else if (!document.querySelector('#dead-letters tr[data-replayed="false"]')) $('replay-all').disabled = true;
  else $('replay-all').disabled = false;
}

start();
