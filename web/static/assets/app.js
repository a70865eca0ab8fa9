// The customer app: choose a demo customer (or paste a token), see the
// accounts, an infinitely scrolling history kept fresh, sync on demand
// (불러오기), and send transfers that are safe to retry.
import {
  api, ApiError, h, setText, setData, session, syncChildren, decodeJwtSubject, makeRefresher,
  formatWon, formatSignedWon, formatTime, formatDateTime, formatFull, parseTime,
} from './common.js';

const TOKEN_KEY = 'banksync.app.token';
const NAME_KEY = 'banksync.app.name';
const ACCOUNT_KEY = 'banksync.app.account';

const PAGE_SIZE = 20;
const REFRESH_MS = 3000;
const POLL_MS = 1000;
const SYNC_ERROR_MS = 10000; // a failed sync stays shown at least this long
const GAP_PAGES_MAX = 10; // pages followed to close a gap above the list before starting over
const MEMO_CHARS_MAX = 140; // the server's limit, counted as it counts: code points after NFC

const $ = (id) => document.getElementById(id);

const KIND_LABELS = {
  deposit: 'Deposit',
  transfer_out: 'Transfer sent',
  transfer_in: 'Transfer received',
};

const REASONS = {
  insufficient_funds: 'Not enough money in the account.',
  account_not_found: 'The receiving account does not exist.',
  balance_overflow: 'The receiving account cannot take this amount.',
  expired: 'The bank did not confirm it in time, so it was cancelled.',
  fenced: 'The bank did not confirm it in time, so it was cancelled.',
  timeout: 'The bank did not confirm it in time, so it was cancelled.',
};

function reasonText(reason) {
  if (reason && REASONS[reason]) return REASONS[reason];
  if (reason) console.warn('transfer failed with reason', reason);
  return 'The bank refused it.';
}

// What a customer reads when a request is refused, chosen by error code.
// The server's own message is written for developers: it goes to the
// console, never on screen.
const MESSAGES = {
  invalid_amount: 'Please enter a whole number of won, no more than one transfer may move.',
  same_account: 'You cannot send money to the account it comes from. Please choose another account.',
  account_not_found: 'There is no account with that number. Please check it and try again.',
  insufficient_funds: REASONS.insufficient_funds,
  balance_overflow: REASONS.balance_overflow,
  idempotency_key_reused: 'This did not match your earlier try. Please check the details and press Send again.',
  transfer_in_progress: 'You already have a transfer on its way from this account. Please wait until it finishes, then try again.',
  rate_limited: 'Too many requests in a short time. Please wait a moment and try again.',
  request_too_large: 'This is too long to send. Please shorten the memo.',
  not_found: 'This account is not available.',
  unauthorized: 'Your session has ended. Please sign in again.',
  unavailable: 'The bank cannot answer just now. Please try again in a moment.',
  internal: 'Something went wrong at the bank. Please try again in a moment.',
  timeout: 'The bank took too long to answer.',
  network: 'Could not reach the bank. Please check your connection.',
};

// invalid_request names a field; these are the ones a customer can fix.
const FIELD_MESSAGES = {
  memo: 'Please shorten the memo to ' + MEMO_CHARS_MAX + ' characters, without line breaks or special control characters.',
  account: 'Please check the account number: it has only letters, digits and . _ : -',
};

/** customerMessage is the plain words for a failed request err, made while doing what. */
function customerMessage(err, what) {
  const e = err instanceof ApiError ? err : new ApiError(-1, 'error', String(err), null);
  console.warn(what + ' failed:', e.status, e.code, e.message);
  if (e.code === 'invalid_amount') {
    // The limit is core's setting: the message is the one place that says it.
    const limit = /between 1 and (\d+)/.exec(e.message);
    if (limit) return 'Please enter an amount from ' + formatWon(1) + ' to ' + formatWon(Number(limit[1])) + '.';
  }
  if (e.code === 'invalid_request') {
    const field = errorField(e);
    if (field === 'memo') return FIELD_MESSAGES.memo;
    if (field.endsWith('account')) return FIELD_MESSAGES.account;
    return 'The bank could not read this request. Please check the details and try again.';
  }
  if (MESSAGES[e.code]) return MESSAGES[e.code];
  if (e.status >= 500) return MESSAGES.unavailable;
  return 'The bank could not do this. Please try again later.';
}

/** errorField is the field an invalid_request error is about, or ''. */
function errorField(e) {
  const detail = e.body && e.body.error;
  if (detail && typeof detail.field === 'string') return detail.field;
  const m = /^(?:field )?([a-z_]+)\b/.exec(e.message);
  return m ? m[1] : '';
}

// ---------------------------------------------------------------- state

const state = {
  epoch: 0, // bumped at sign-in and sign-out; late answers of an older epoch are dropped
  token: null,
  payees: [], // [{account_id, name}] from the demo endpoint
  names: new Map(), // account id → display name
  accounts: new Map(), // id → account state, in server order
  selected: null,
  history: null, // see newHistory
  pending: new Map(), // transfer id → {transfer, local}
  polls: new Map(), // transfer id → timeout id
  attempt: null, // {key, body, inFlight}
  sending: false, // a POST /v1/transfers is waiting for its answer
  checkedAt: 0, // when the accounts were last read
  statusTransferId: null,
  syncing: false,
  syncError: null,
  syncErrorAt: 0,
  refreshError: null,
  refreshErrorText: '', // refreshError in the customer's words
  filter: { kind: '', q: '' }, // the history's filter: kind '' | 'in' | 'out', q the search text
};

let demoPromise = null;
let observer = null;

function newHistory(account) {
  return {
    account,
    gen: (state.history ? state.history.gen : 0) + 1,
    rows: new Map(), // seq → li
    maxSeq: 0,
    minSeq: Infinity,
    loadedFirst: false,
    nextCursor: null,
    loadingOlder: false,
    olderError: null,
  };
}

// ---------------------------------------------------------------- start

function start() {
  $('switch-customer').addEventListener('click', () => signOut(''));
  $('token-form').addEventListener('submit', onTokenSubmit);
  $('sync-button').addEventListener('click', doSync);
  $('transfer-form').addEventListener('submit', onTransferSubmit);
  $('transfer-form').addEventListener('input', onTransferInput);
  $('transfer-retry').addEventListener('click', onRetry);
  $('transfer-toggle').addEventListener('click', () => openTransfer(!$('transfer-toggle').classList.contains('open')));
  $('history-kind').addEventListener('change', applyFilter);
  let searchTimer = null;
  $('history-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applyFilter, 300);
  });
  $('history-search').addEventListener('search', applyFilter);
  $('statement-toggle').addEventListener('click', toggleStatement);
  $('statement-form').addEventListener('submit', onStatementSubmit);
  $('history-retry').addEventListener('click', () => {
    if (!state.history) return;
    state.history.olderError = null;
    renderHistoryFooter();
    loadOlder();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.token) refresh();
  });

  observer = new IntersectionObserver((items) => {
    for (const it of items) if (it.isIntersecting) loadOlder();
  }, { rootMargin: '0px 0px 600px 0px' });
  observer.observe($('history-sentinel'));

  demoPromise = api('/demo/v1/customers', { timeout: 8000 }).then(
    ({ data }) => ({ ok: true, customers: asArray(data.customers), payees: asArray(data.payees) }),
    (err) => ({ ok: false, err }),
  );
  demoPromise.then((demo) => {
    if (!demo.ok) return;
    state.payees = demo.payees.filter((p) => p && typeof p.account_id === 'string');
    for (const p of state.payees) if (typeof p.name === 'string' && p.name) state.names.set(p.account_id, p.name);
    renderPayees();
    if (state.history) for (const li of state.history.rows.values()) refreshPartyName(li);
  });

  const token = session.get(TOKEN_KEY);
  if (token) signIn(token, session.get(NAME_KEY) || '');
  else showLogin('');
}

function asArray(v) {
  return Array.isArray(v) ? v : [];
}

// ---------------------------------------------------------------- login

async function showLogin(message) {
  $('bank').hidden = true;
  $('customer-name').hidden = true;
  $('switch-customer').hidden = true;
  $('login').hidden = false;
  showNotice($('login-message'), message);
  const list = $('customers');
  list.replaceChildren(h('p', { class: 'muted' }, 'Loading customers…'));
  const demo = await demoPromise;
  if (state.token) return; // signed in meanwhile
  list.replaceChildren();
  if (demo.ok && demo.customers.length) {
    $('login-hint').textContent = 'Choose a demo customer to sign in.';
    for (const c of demo.customers) {
      if (!c || typeof c.customer !== 'string' || typeof c.token !== 'string') continue;
      const name = typeof c.name === 'string' && c.name ? c.name : c.customer;
      list.appendChild(h('button', {
        type: 'button',
        class: 'customer-button',
        dataset: { customer: c.customer },
        onclick: () => signIn(c.token, name),
      },
      h('span', { class: 'avatar', 'aria-hidden': 'true' }, initials(name)),
      h('span', { class: 'customer-text' },
        h('span', { class: 'customer-label' }, name),
        h('span', { class: 'customer-id' }, c.customer))));
    }
    $('token-form').hidden = true;
    return;
  }
  // No demo: ask for a token.
  $('login-hint').textContent = 'Paste a customer bearer token to sign in.';
  $('token-form').hidden = false;
  if (!demo.ok && demo.err.status !== 404) {
    showNotice($('login-message'), message || 'Could not load the demo customers. ' + customerMessage(demo.err, 'loading the demo customers'));
  }
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : name.slice(0, 2);
  return s.toUpperCase();
}

function onTokenSubmit(e) {
  e.preventDefault();
  const token = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
  if (!token) {
    showNotice($('login-message'), 'Paste a token first.');
    return;
  }
  $('token-input').value = '';
  signIn(token, decodeJwtSubject(token));
}

function signIn(token, name) {
  state.epoch++;
  state.token = token;
  session.set(TOKEN_KEY, token);
  session.set(NAME_KEY, name || '');
  $('login').hidden = true;
  $('bank').hidden = false;
  showNotice($('login-message'), '');
  const who = $('customer-name');
  who.textContent = name || decodeJwtSubject(token) || 'Signed in';
  who.hidden = false;
  $('switch-customer').hidden = false;
  resetTransferUI();
  renderSyncState();
  refresh();
}

function signOut(message) {
  state.epoch++;
  closeLiveStream();
  state.token = null;
  session.remove(TOKEN_KEY);
  session.remove(NAME_KEY);
  session.remove(ACCOUNT_KEY);
  refresher?.stop();
  for (const t of state.polls.values()) clearTimeout(t);
  state.polls.clear();
  state.pending.clear();
  state.accounts.clear();
  state.selected = null;
  state.history = null;
  state.attempt = null;
  state.sending = false;
  state.statusTransferId = null;
  state.syncing = false;
  state.syncError = null;
  state.refreshError = null;
  $('accounts').replaceChildren();
  $('history').replaceChildren();
  renderPending();
  renderHistoryFooter();
  resetTransferUI();
  showLogin(message);
}

/** handleAuth signs out on 401; it returns true when it did. */
function handleAuth(err) {
  if (err instanceof ApiError && err.status === 401 && state.token) {
    signOut(customerMessage(err, 'a request'));
    return true;
  }
  return false;
}

function showNotice(node, message) {
  node.textContent = message || '';
  node.hidden = !message;
}

// ---------------------------------------------------------------- refresh loop

let refresher = null;

/**
 * refresh re-reads the accounts and the newest history page, now and every
 * REFRESH_MS (see makeRefresher).
 */
function refresh() {
  refresher ??= makeRefresher(state, refreshOnce, REFRESH_MS);
  return refresher();
}

async function refreshOnce(epoch) {
  try {
    const [accounts] = await Promise.all([
      api('/v1/accounts', { token: state.token }),
      state.history ? loadNewest() : null,
    ]);
    if (epoch !== state.epoch) return;
    applyAccounts(asArray(accounts.data.accounts));
    // A history chosen meanwhile (first sign-in, a click) has not been read yet.
    if (state.history && !state.history.loadedFirst) await loadNewest();
    if (epoch !== state.epoch) return;
    ensureLiveStream();
    state.refreshError = null;
    state.checkedAt = Date.now();
    renderAccounts();
    const a = state.selected !== null ? state.accounts.get(state.selected) : null;
    if (state.syncError && a && !a.stale && Date.now() - state.syncErrorAt > SYNC_ERROR_MS) state.syncError = null;
    showNotice($('accounts-message'), state.accounts.size ? '' : 'This customer has no accounts.');
  } catch (err) {
    if (epoch !== state.epoch) return;
    if (handleAuth(err)) return;
    state.refreshError = err instanceof ApiError ? err : new ApiError(-1, 'error', String(err), null);
    state.refreshErrorText = customerMessage(err, 'refreshing');
    renderAccounts();
  }
  renderSyncState();
}

// ---------------------------------------------------------------- live

let live = null; // { opening, source, account, token, history }

/**
 * ensureLiveStream keeps one Server-Sent Events stream open for the shown
 * history, so a new entry appears as soon as the channel has it, without
 * waiting for the next refresh. It starts after the newest entry shown; the
 * browser reconnects by itself with Last-Event-ID, and a stream the server
 * closed for good (a 4xx, such as an expired ticket) is opened again here,
 * with a new ticket, at the next refresh.
 */
function ensureLiveStream() {
  const hs = state.history;
  if (!hs || !hs.loadedFirst || !state.token || typeof EventSource === 'undefined') return;
  if (live && live.history === hs && live.token === state.token && (live.opening || live.source.readyState !== EventSource.CLOSED)) return;
  closeLiveStream();
  const token = state.token;
  const opening = { opening: true, account: hs.account, token, history: hs, source: null };
  live = opening;
  // The stream's URL carries a short ticket for this account, never the
  // bearer token: URLs end up in logs.
  api('/v1/accounts/' + encodeURIComponent(hs.account) + '/stream-ticket', { method: 'POST', token }).then(({ data }) => {
    if (live !== opening || !data || typeof data.ticket !== 'string') return;
    // A filtered list's newest row may be far below the history's newest
    // entry: start from whichever is later, so nothing old is sent again.
    const account = state.accounts.get(hs.account);
    const after = Math.max(hs.maxSeq, Number(account?.synced_through_seq) || 0);
    const source = new EventSource('/v1/accounts/' + encodeURIComponent(hs.account) + '/stream?after=' + after +
      '&ticket=' + encodeURIComponent(data.ticket));
    live = { opening: false, account: hs.account, token, history: hs, source };
    source.addEventListener('entry', (ev) => onLiveEntry(hs, ev));
  }).catch((err) => {
    if (live === opening) live = null; // tried again at the next refresh
    handleAuth(err);
  });
}

/** onLiveEntry puts an entry the live stream brought into the list. */
function onLiveEntry(hs, ev) {
  if (state.history !== hs) return;
  let e;
  try {
    e = JSON.parse(ev.data);
  } catch {
    return;
  }
  if (!e || !Number.isSafeInteger(e.seq)) return;
  const a = state.accounts.get(hs.account);
  if (a) mergeAccount({ ...a, balance: e.balance_after, synced_through_seq: e.seq });
  if (!matchesFilter(e)) return;
  insertEntries(hs, [e], true);
  const li = hs.rows.get(e.seq);
  if (li && !li.dataset.via) {
    li.dataset.via = 'stream';
    li.dataset.shownAt = String(Date.now());
  }
  renderHistoryFooter();
}

function closeLiveStream() {
  live?.source?.close();
  live = null;
}

// ---------------------------------------------------------------- accounts

function applyAccounts(list) {
  const ids = new Set();
  const next = new Map();
  for (const a of list) {
    if (!a || typeof a.account_id !== 'string') continue;
    ids.add(a.account_id);
    const prev = state.accounts.get(a.account_id);
    next.set(a.account_id, newer(prev, a));
  }
  state.accounts = next;
  if (state.selected === null || !ids.has(state.selected)) {
    const remembered = session.get(ACCOUNT_KEY);
    const first = remembered && ids.has(remembered) ? remembered : ids.size ? ids.values().next().value : null;
    if (first !== null) selectAccount(first, true);
    else state.selected = null;
  }
  renderAccounts();
  renderPayees();
}

/** newer picks the later of two states of one account (answers may arrive out of order). */
function newer(prev, next) {
  if (!prev) return next;
  const p = Number(prev.synced_through_seq) || 0;
  const n = Number(next.synced_through_seq) || 0;
  return n >= p ? next : prev;
}

function mergeAccount(a) {
  if (!a || typeof a.account_id !== 'string' || !state.accounts.has(a.account_id)) return;
  state.accounts.set(a.account_id, newer(state.accounts.get(a.account_id), a));
  renderAccounts();
}

function renderAccounts() {
  syncChildren($('accounts'), Array.from(state.accounts.values()), (a) => a.account_id, (a) => {
    const btn = h('button', { type: 'button', class: 'account', dataset: { account: a.account_id } },
      h('span', { class: 'account-name' }),
      h('span', { class: 'account-balance' }),
      h('span', { class: 'account-flag' }));
    btn.addEventListener('click', () => selectAccount(a.account_id));
    return btn;
  }, (btn, a) => {
    const selected = a.account_id === state.selected;
    btn.classList.toggle('selected', selected);
    btn.setAttribute('aria-pressed', selected ? 'true' : 'false');
    btn.classList.toggle('stale', !!a.stale);
    setText(btn.children[0], a.account_id);
    setText(btn.children[1], formatWon(a.balance));
    setText(btn.children[2], a.stale ? 'Catching up with the bank…' : checkedText());
  });
}

/** checkedText says how fresh the balances are, in the customer's terms. */
function checkedText() {
  if (!state.checkedAt) return '';
  if (!state.refreshError) return 'Updated just now';
  return 'Updated at ' + formatTime(new Date(state.checkedAt));
}

function selectAccount(id, fromRefresh = false) {
  if (state.selected === id) return;
  state.selected = id;
  session.set(ACCOUNT_KEY, id);
  state.syncError = null;
  state.history = newHistory(id);
  $('history').replaceChildren();
  renderHistoryFooter();
  renderAccounts();
  renderPayees();
  renderPending();
  setText($('transfer-from'), id);
  renderSendButton();
  if (state.attempt && !state.attempt.inFlight) endAttempt();
  // A finished transfer's outcome belongs to the account it was sent from.
  const st = $('transfer-status');
  if (!st.hidden && st.dataset.state !== 'sending' && st.dataset.state !== 'pending') {
    st.hidden = true;
    state.statusTransferId = null;
  }
  renderSyncState();
  if (!fromRefresh) refresh();
}

function renderPayees() {
  const list = $('payees');
  const own = new Set(state.accounts.keys());
  const options = [];
  for (const p of state.payees) {
    if (own.has(p.account_id)) continue;
    options.push({ value: p.account_id, label: p.name || p.account_id });
  }
  for (const id of own) {
    if (id !== state.selected) options.push({ value: id, label: 'Your account' });
  }
  syncChildren(list, options, (o) => o.value, () => h('option'), (opt, o) => {
    if (opt.value !== o.value) opt.value = o.value;
    if (opt.label !== o.label) opt.label = o.label;
  });
}

function displayName(id) {
  const name = state.names.get(id);
  return name ? `${name} (${id})` : id;
}

// ---------------------------------------------------------------- sync state

function renderSyncState() {
  const node = $('sync-state');
  const a = state.selected !== null ? state.accounts.get(state.selected) : null;
  let st;
  let text;
  if (state.syncing) {
    st = 'syncing';
    text = 'Syncing with the bank…';
  } else if (state.syncError) {
    st = 'error';
    text = 'Could not sync. ' + state.syncError;
  } else if (state.refreshError) {
    st = 'error';
    text = state.refreshError.status === 0
      ? 'Cannot reach the bank — retrying…'
      : 'Could not refresh. ' + state.refreshErrorText;
  } else if (!a) {
    st = 'syncing';
    text = 'Loading…';
  } else if (a.stale) {
    st = 'stale';
    text = 'Catching up with the bank — press 불러오기';
  } else {
    st = 'synced';
    text = 'Up to date';
  }
  setData(node, 'state', st);
  setText(node, text);
  const at = parseTime(a && a.synced_at);
  node.title = st === 'error' ? '' : at ? 'Last change ' + formatFull(at) : '';
  $('sync-button').disabled = state.syncing || state.selected === null;
}

async function doSync() {
  if (state.syncing || state.selected === null || !state.token) return;
  const id = state.selected;
  const epoch = state.epoch;
  state.syncing = true;
  state.syncError = null;
  renderSyncState();
  try {
    const { data } = await api('/v1/accounts/' + encodeURIComponent(id) + '/sync', { method: 'POST', token: state.token, timeout: 30000 });
    if (epoch !== state.epoch) return;
    mergeAccount(data);
  } catch (err) {
    if (epoch !== state.epoch || handleAuth(err)) return;
    if (state.selected === id) {
      state.syncError = customerMessage(err, 'syncing');
      state.syncErrorAt = Date.now();
    }
  } finally {
    if (epoch === state.epoch) {
      state.syncing = false;
      renderSyncState();
    }
  }
  await refresh();
}

// ---------------------------------------------------------------- history

function pagePath(account, cursor) {
  let p = '/v1/accounts/' + encodeURIComponent(account) + '/transactions?limit=' + PAGE_SIZE;
  if (cursor) p += '&cursor=' + encodeURIComponent(cursor);
  if (state.filter.kind) p += '&kind=' + state.filter.kind;
  if (state.filter.q) p += '&q=' + encodeURIComponent(state.filter.q);
  return p;
}

function filtered() {
  return !!(state.filter.kind || state.filter.q);
}

/**
 * matchesFilter tells whether an entry belongs in the filtered list, by the
 * server's rule: the sign of the amount, and the search text in the
 * counterparty or the memo, case folded, in NFC.
 */
function matchesFilter(e) {
  const f = state.filter;
  if ((f.kind === 'in' && e.amount < 0) || (f.kind === 'out' && e.amount > 0)) return false;
  if (!f.q) return true;
  const fold = (v) => String(v || '').normalize('NFC').toLowerCase();
  const q = fold(f.q);
  return fold(e.counterparty).includes(q) || fold(e.memo).includes(q);
}

/** applyFilter reads the filter and search boxes and starts the list over. */
function applyFilter() {
  const next = { kind: $('history-kind').value, q: $('history-search').value.trim() };
  if (next.kind === state.filter.kind && next.q === state.filter.q) return;
  state.filter = next;
  if (state.selected === null) return;
  closeLiveStream();
  state.history = newHistory(state.selected);
  $('history').replaceChildren();
  renderHistoryFooter();
  refresh();
}

// ---------------------------------------------------------------- statement

function toggleStatement() {
  const form = $('statement-form');
  const open = form.hidden;
  form.hidden = !open;
  $('statement-toggle').setAttribute('aria-expanded', open ? 'true' : 'false');
  if (open && !$('statement-from').value) {
    const today = new Date();
    const iso = (d) => d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');
    $('statement-from').value = iso(new Date(today.getFullYear(), today.getMonth(), 1));
    $('statement-to').value = iso(today);
  }
}

/**
 * onStatementSubmit downloads the statement (거래내역서) of the chosen days
 * as CSV, in the browser's time zone: fetched with the token in its header,
 * then saved through a link to the file.
 */
async function onStatementSubmit(ev) {
  ev.preventDefault();
  const account = state.selected;
  if (account === null || !state.token) return;
  const msg = $('statement-message');
  const from = $('statement-from').value;
  const to = $('statement-to').value;
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const path = '/v1/accounts/' + encodeURIComponent(account) + '/statement?from=' + encodeURIComponent(from) +
    '&to=' + encodeURIComponent(to) + '&tz=' + encodeURIComponent(tz);
  showNotice(msg, 'Preparing your statement…');
  try {
    const res = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token }, cache: 'no-store' });
    if (!res.ok) {
      let data = null;
      try {
        data = await res.json();
      } catch {
        data = null;
      }
      const err = new ApiError(res.status, data?.error?.code || 'error', data?.error?.message || '', data);
      if (handleAuth(err)) return;
      showNotice(msg, customerMessage(err, 'preparing the statement'));
      return;
    }
    const blob = await res.blob();
    const name = (res.headers.get('Content-Disposition') || '').match(/filename="([^"]+)"/)?.[1] || 'statement.csv';
    const link = h('a', { href: URL.createObjectURL(blob), download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    const rows = (await blob.text()).split('\n').filter((l) => l.trim()).length - 1;
    msg.dataset.synced = res.headers.get('Banksync-Synced-Through-Seq') || '';
    showNotice(msg, 'Downloaded ' + name + ': ' + rows + (rows === 1 ? ' entry.' : ' entries.'));
  } catch (err) {
    showNotice(msg, customerMessage(err, 'preparing the statement'));
  }
}

async function fetchPage(account, cursor) {
  const { data } = await api(pagePath(account, cursor), { token: state.token });
  return {
    account: data.account,
    transactions: asArray(data.transactions).filter((e) => e && Number.isSafeInteger(e.seq)),
    nextCursor: typeof data.next_cursor === 'string' && data.next_cursor ? data.next_cursor : null,
    pending: asArray(data.pending_transfers),
  };
}

/**
 * loadNewest reads page 1 and puts entries the list lacks in their place.
 * If more arrived since the last look than a page holds, it follows the
 * cursor down to the newest entry already shown so no hole opens.
 */
async function loadNewest() {
  const hs = state.history;
  if (!hs) return;
  const epoch = state.epoch;
  const stillHere = () => epoch === state.epoch && state.history === hs;
  const page = await fetchPage(hs.account, null);
  if (!stillHere()) return;
  mergeAccount(page.account);
  applyServerPending(hs.account, page.pending);

  if (!hs.loadedFirst || hs.rows.size === 0) {
    hs.loadedFirst = true;
    hs.nextCursor = page.nextCursor;
    insertEntries(hs, page.transactions, false);
    renderHistoryFooter();
    kickSentinel();
    return;
  }

  const collected = page.transactions.slice();
  let cursor = page.nextCursor;
  let pages = 1;
  const lowest = () => collected.reduce((m, e) => Math.min(m, e.seq), Infinity);
  // A filtered list has gaps between its seqs: there the pages are
  // followed down to the newest entry shown, not to the one after it.
  const reached = () => lowest() <= hs.maxSeq + (filtered() ? 0 : 1);
  while (collected.length && !reached() && cursor) {
    if (pages >= GAP_PAGES_MAX) {
      // Too far behind to stitch: start the list over from the top.
      const fresh = newHistory(hs.account);
      state.history = fresh;
      $('history').replaceChildren();
      fresh.loadedFirst = true;
      fresh.nextCursor = page.nextCursor;
      insertEntries(fresh, page.transactions, false);
      renderHistoryFooter();
      kickSentinel();
      return;
    }
    const more = await fetchPage(hs.account, cursor);
    if (!stillHere()) return;
    collected.push(...more.transactions);
    cursor = more.nextCursor;
    pages++;
  }
  insertEntries(hs, collected, true);
  renderHistoryFooter();
}

async function loadOlder() {
  const hs = state.history;
  if (!hs || !state.token || !hs.loadedFirst || !hs.nextCursor || hs.loadingOlder || hs.olderError) return;
  const epoch = state.epoch;
  const stillHere = () => epoch === state.epoch && state.history === hs;
  hs.loadingOlder = true;
  renderHistoryFooter();
  try {
    const page = await fetchPage(hs.account, hs.nextCursor);
    if (!stillHere()) return;
    mergeAccount(page.account);
    insertEntries(hs, page.transactions, false);
    hs.nextCursor = page.nextCursor;
  } catch (err) {
    if (!stillHere() || handleAuth(err)) return;
    hs.olderError = customerMessage(err, 'loading older entries');
  } finally {
    if (stillHere()) {
      hs.loadingOlder = false;
      renderHistoryFooter();
      kickSentinel();
    }
  }
}

/** kickSentinel re-observes the sentinel so a still-visible one loads again. */
function kickSentinel() {
  const s = $('history-sentinel');
  observer.unobserve(s);
  observer.observe(s);
}

/** viewTop is the first pixel of the viewport not covered by the sticky top bar. */
function viewTop() {
  const bar = document.querySelector('.topbar');
  if (!bar) return 0;
  const r = bar.getBoundingClientRect();
  return r.bottom > 0 ? r.bottom : 0;
}

/**
 * insertEntries adds entries not yet shown, keeping rows in descending seq
 * order. When rows go in above what the reader is looking at, the page is
 * scrolled by their height so nothing moves on screen.
 */
function insertEntries(hs, entries, markNew) {
  const list = $('history');
  const fresh = [];
  const seen = new Set();
  for (const e of entries) {
    if (hs.rows.has(e.seq) || seen.has(e.seq)) continue;
    seen.add(e.seq);
    fresh.push(e);
  }
  if (!fresh.length) return;
  fresh.sort((a, b) => b.seq - a.seq);

  // Anchor: the first row at or below the top of the viewport.
  const top = viewTop();
  let anchor = null;
  let anchorTop = 0;
  if (list.firstElementChild && list.getBoundingClientRect().top < top) {
    for (const li of list.children) {
      const r = li.getBoundingClientRect();
      if (r.bottom > top) {
        anchor = li;
        anchorTop = r.top;
        break;
      }
    }
  }

  for (const e of fresh) {
    const li = renderTx(e);
    if (markNew && hs.rows.size) li.classList.add('tx-new');
    placeRow(list, li, e.seq);
    hs.rows.set(e.seq, li);
    if (e.seq > hs.maxSeq) hs.maxSeq = e.seq;
    if (e.seq < hs.minSeq) hs.minSeq = e.seq;
  }

  if (anchor) {
    const delta = anchor.getBoundingClientRect().top - anchorTop;
    if (delta) window.scrollBy(0, delta);
  }
}

function placeRow(list, li, seq) {
  const last = list.lastElementChild;
  if (!last || Number(last.dataset.seq) > seq) {
    list.appendChild(li);
    return;
  }
  for (const child of list.children) {
    if (Number(child.dataset.seq) < seq) {
      list.insertBefore(li, child);
      return;
    }
  }
  list.appendChild(li);
}

function renderTx(e) {
  const amount = Number(e.amount) || 0;
  const credit = amount > 0;
  const kind = KIND_LABELS[e.kind] || String(e.kind || 'Entry');
  const party = typeof e.counterparty === 'string' ? e.counterparty : '';
  const booked = parseTime(e.booked_at);
  const meta = [h('span', { class: 'tx-kind' }, kind)];
  if (e.memo) meta.push(h('span', { class: 'tx-memo' }, String(e.memo)));
  const li = h('li', { class: 'tx ' + (credit ? 'tx-credit' : 'tx-debit'), dataset: { seq: e.seq, kind: e.kind || '' } },
    h('span', { class: 'tx-icon', 'aria-hidden': 'true' }, credit ? '↓' : '↑'),
    h('div', { class: 'tx-main' },
      h('span', { class: 'tx-party', dataset: { party }, title: party }, partyLabel(e.kind, party)),
      h('span', { class: 'tx-meta' }, meta),
      h('span', { class: 'tx-when' },
        h('time', { datetime: booked ? booked.toISOString() : '', title: booked ? formatFull(booked) : '' }, booked ? formatDateTime(booked) : ''))),
    h('div', { class: 'tx-amounts' },
      h('span', { class: 'tx-amount' }, formatSignedWon(amount)),
      h('span', { class: 'tx-balance' }, 'Balance ' + formatWon(e.balance_after))));
  return li;
}

function partyLabel(kind, party) {
  if (!party) return KIND_LABELS[kind] || 'Entry';
  if (kind === 'deposit') return party;
  return state.names.get(party) || party;
}

function refreshPartyName(li) {
  const node = li.querySelector('.tx-party');
  if (node) setText(node, partyLabel(li.dataset.kind, node.dataset.party));
}

function renderHistoryFooter() {
  const hs = state.history;
  const loaded = !!hs && hs.loadedFirst;
  $('history-loading').hidden = !(hs && (!hs.loadedFirst || hs.loadingOlder));
  const err = hs && hs.olderError;
  $('history-error').hidden = !err;
  setText($('history-error-text'), err ? 'Could not load older entries. ' + err : '');
  const end = $('history-end');
  end.hidden = !(loaded && !hs.nextCursor);
  const none = filtered() ? 'No matching transactions · Beginning of history' : 'No transactions yet · Beginning of history';
  setText(end, loaded && hs.rows.size === 0 ? none : 'Beginning of history');
}

// ---------------------------------------------------------------- pending transfers

function applyServerPending(account, list) {
  const ids = new Set();
  for (const t of list) {
    if (!t || typeof t.transfer_id !== 'string') continue;
    ids.add(t.transfer_id);
    if (t.state && t.state !== 'pending') continue;
    const prev = state.pending.get(t.transfer_id);
    state.pending.set(t.transfer_id, { transfer: t, local: prev ? prev.local : false });
    poll(t.transfer_id);
  }
  for (const [id, p] of state.pending) {
    if (!p.local && p.transfer.from_account === account && !ids.has(id)) state.pending.delete(id);
  }
  renderPending();
}

function renderPending() {
  const items = Array.from(state.pending.values()).map((p) => p.transfer)
    .sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
  $('pending-box').hidden = items.length === 0;
  renderSendButton();
  syncChildren($('pending-transfers'), items, (t) => t.transfer_id, () => h('li', { class: 'pending-item' },
    h('span', { class: 'pending-spinner', 'aria-hidden': 'true' }),
    h('span', { class: 'pending-main' },
      h('span', { class: 'pending-what' }),
      h('span', { class: 'pending-meta' })),
    h('span', { class: 'pending-amount' })), (li, t) => {
    setData(li, 'transfer', t.transfer_id);
    setData(li, 'state', t.state || 'pending');
    const main = li.children[1];
    setText(main.children[0], 'To ' + displayName(String(t.to_account || '')));
    const bits = ['From ' + (t.from_account || ''), 'waiting for the bank'];
    const created = formatTime(t.created_at);
    if (created) bits.push('started ' + created);
    setText(main.children[1], bits.join(' · '));
    setText(li.children[2], formatSignedWon(-Math.abs(Number(t.amount) || 0)));
  });
}

/** poll asks for a pending transfer every second until it settles. */
function poll(id) {
  if (state.polls.has(id) || !state.token) return;
  const epoch = state.epoch;
  let delay = POLL_MS;
  const run = async () => {
    if (epoch !== state.epoch) return;
    let t;
    try {
      ({ data: t } = await api('/v1/transfers/' + encodeURIComponent(id), { token: state.token }));
    } catch (err) {
      if (epoch !== state.epoch || handleAuth(err)) return;
      if (err.status === 404) {
        state.polls.delete(id);
        state.pending.delete(id);
        renderPending();
        return;
      }
      delay = Math.min(delay * 2, 8000);
      state.polls.set(id, setTimeout(run, delay));
      return;
    }
    if (epoch !== state.epoch) return;
    delay = POLL_MS;
    if (!t || t.state === 'pending') {
      const prev = state.pending.get(id);
      if (t) state.pending.set(id, { transfer: t, local: prev ? prev.local : true });
      renderPending();
      state.polls.set(id, setTimeout(run, POLL_MS));
      return;
    }
    state.polls.delete(id);
    state.pending.delete(id);
    renderPending();
    if (state.statusTransferId === id) {
      showOutcome(t);
      openTransfer(true); // on a phone the customer may have folded the form meanwhile
    }
    refresh();
  };
  state.polls.set(id, setTimeout(run, POLL_MS));
}

// ---------------------------------------------------------------- transfers

function randomKey() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function readForm() {
  const to = $('transfer-to');
  const amount = $('transfer-amount');
  to.setCustomValidity('');
  amount.setCustomValidity('');
  const toValue = to.value.trim();
  const raw = amount.value.trim();
  const n = Number(raw);
  if (!toValue) to.setCustomValidity('Enter the account to send to.');
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < 1) amount.setCustomValidity('Enter a whole number of won, 1 or more.');
  checkMemo();
  if (!$('transfer-form').reportValidity()) return null;
  return formValues();
}

function sameBody(a, b) {
  return a.from_account === b.from_account && a.to_account === b.to_account && a.amount === b.amount && a.memo === b.memo;
}

function onTransferSubmit(e) {
  e.preventDefault();
  if (!state.token || state.selected === null) return;
  if (state.sending || pendingFromSelected()) return;
  // A new try starts: the last one's outcome no longer describes the form,
  // even when the browser refuses this one before it is sent.
  clearStatus();
  const body = readForm();
  if (!body) return;
  // A new attempt gets a new key; pressing Send again on an unchanged form
  // after a lost answer is the same attempt, so it cannot send twice.
  if (!state.attempt || !sameBody(state.attempt.body, body)) {
    state.attempt = { key: randomKey(), body, inFlight: false };
  }
  send(state.attempt);
}

function onRetry() {
  if (state.attempt && !state.attempt.inFlight && !state.sending) send(state.attempt);
}

function onTransferInput(e) {
  if (e.target && e.target.setCustomValidity) e.target.setCustomValidity('');
  if (e.target === $('transfer-amount')) renderAmountPreview();
  if (e.target === $('transfer-memo')) {
    renderMemoCount();
    checkMemo();
  }
  // Only a different transfer is a new attempt: a form edited and put back
  // keeps the key, so its Send cannot make a second transfer.
  if (state.attempt && !state.attempt.inFlight && !sameBody(state.attempt.body, formValues())) endAttempt();
}

/** formValues is the form as readForm reads it, without validating. */
function formValues() {
  return {
    from_account: state.selected,
    to_account: $('transfer-to').value.trim(),
    amount: Number($('transfer-amount').value.trim()),
    memo: memoValue(),
  };
}

/** memoValue is the memo as it is sent: trimmed and NFC-normalised, as the server keeps it. */
function memoValue() {
  return $('transfer-memo').value.trim().normalize('NFC');
}

/** memoLength counts characters as the server does: code points, not UTF-16 units or bytes. */
function memoLength() {
  return [...memoValue()].length;
}

function checkMemo() {
  const memo = $('transfer-memo');
  const over = memoLength() > MEMO_CHARS_MAX;
  memo.setCustomValidity(over ? 'Please shorten the memo to ' + MEMO_CHARS_MAX + ' characters.' : '');
  return !over;
}

function renderMemoCount() {
  const n = memoLength();
  const node = $('transfer-memo-count');
  setText(node, n + '/' + MEMO_CHARS_MAX);
  setData(node, 'over', n > MEMO_CHARS_MAX);
}

function renderAmountPreview() {
  const raw = $('transfer-amount').value.trim();
  const n = Number(raw);
  setText($('transfer-amount-preview'), /^\d+$/.test(raw) && Number.isSafeInteger(n) && n > 0 ? formatWon(n) : '');
}

function endAttempt() {
  state.attempt = null;
  $('transfer-retry').hidden = true;
}

function resetTransferUI() {
  $('transfer-form').reset();
  renderAmountPreview();
  renderMemoCount();
  renderSendButton();
  clearStatus();
  openTransfer(false);
}

/** clearStatus hides the status box and forgets whose outcome it was waiting for. */
function clearStatus() {
  const st = $('transfer-status');
  st.hidden = true;
  setData(st, 'state', '');
  delete st.dataset.code;
  delete st.dataset.transfer;
  $('transfer-retry').hidden = true;
  state.statusTransferId = null;
}

/** pendingFromSelected: core has not settled a transfer from the selected account yet. */
function pendingFromSelected() {
  if (state.selected === null) return false;
  for (const p of state.pending.values()) if (p.transfer.from_account === state.selected) return true;
  return false;
}

/**
 * renderSendButton disables Send while a transfer is being sent or one from
 * this account is still on its way (the server would refuse a second), and
 * says which.
 */
function renderSendButton() {
  const btn = $('transfer-submit');
  const waiting = !state.sending && pendingFromSelected();
  btn.disabled = state.sending || waiting || state.selected === null;
  setData(btn, 'busy', state.sending || waiting);
  btn.setAttribute('aria-busy', state.sending || waiting ? 'true' : 'false');
  setText(btn, state.sending ? 'Sending…' : waiting ? 'Waiting for your last transfer…' : 'Send');
}

/** openTransfer opens or closes the send form; only a phone's layout folds it. */
function openTransfer(open) {
  const toggle = $('transfer-toggle');
  toggle.classList.toggle('open', open);
  toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
  document.querySelector('.area-transfer').classList.toggle('open', open);
}

function showStatus(st, title, text, extra = {}) {
  const node = $('transfer-status');
  node.hidden = false;
  setData(node, 'state', st);
  if (extra.code) node.dataset.code = extra.code;
  else delete node.dataset.code;
  if (extra.transfer) node.dataset.transfer = extra.transfer;
  else delete node.dataset.transfer;
  setText($('transfer-status-title'), title);
  setText($('transfer-status-text'), text);
  $('transfer-retry').hidden = !extra.retry;
}

function describe(t) {
  return formatWon(Math.abs(Number(t.amount) || 0)) + ' to ' + displayName(String(t.to_account || ''));
}

async function send(attempt) {
  const epoch = state.epoch;
  attempt.inFlight = true;
  state.sending = true;
  renderSendButton();
  state.statusTransferId = null;
  showStatus('sending', 'Sending…', describe(attempt.body) + '.');
  try {
    const { status, data } = await api('/v1/transfers', {
      method: 'POST',
      token: state.token,
      json: attempt.body,
      headers: { 'Idempotency-Key': attempt.key },
      timeout: 30000,
    });
    if (epoch !== state.epoch) return;
    if (state.attempt === attempt) endAttempt();
    const t = data || {};
    if (status === 202 || t.state === 'pending') {
      state.statusTransferId = t.transfer_id || null;
      showOutcome(t);
      if (t.transfer_id) {
        state.pending.set(t.transfer_id, { transfer: t, local: true });
        renderPending();
        poll(t.transfer_id);
      }
    } else {
      showOutcome(t);
      if (t.state === 'completed') clearFormAfterSend();
    }
    refresh();
  } catch (err) {
    if (epoch !== state.epoch || handleAuth(err)) return;
    if (!(err instanceof ApiError)) throw err;
    if (err.retryable) {
      // The answer was lost or the server could not take it: the transfer may
      // or may not exist. Retrying with the same key is safe either way.
      showStatus('error', 'Not confirmed yet', customerMessage(err, 'sending a transfer') + ' Press Try again to resend the same transfer; it will not be sent twice.', { code: err.code, retry: true });
      return;
    }
    if (state.attempt === attempt) endAttempt();
    if (err.code === 'transfer_failed') {
      const t = err.body && err.body.transfer ? err.body.transfer : null;
      showOutcome(t || { ...attempt.body, state: 'failed' });
    } else if (err.code === 'transfer_in_progress') {
      showStatus('refused', 'Please wait', customerMessage(err, 'sending a transfer'), { code: err.code });
    } else {
      showStatus('refused', 'Not sent', customerMessage(err, 'sending a transfer') + ' No money was moved.', { code: err.code });
    }
    refresh();
  } finally {
    attempt.inFlight = false;
    if (epoch === state.epoch) {
      state.sending = false;
      renderSendButton();
    }
  }
}

/** showOutcome shows a transfer's state in the status area. */
function showOutcome(t) {
  const id = t && t.transfer_id ? String(t.transfer_id) : '';
  switch (t && t.state) {
    case 'pending':
      showStatus('pending', 'Processing…', 'The bank has not confirmed yet. ' + describe(t) + ' — this updates by itself when it is confirmed.', { transfer: id });
      break;
    case 'completed':
      showStatus('completed', 'Sent', describe(t) + (t.memo ? ' · “' + t.memo + '”' : '') + '.', { transfer: id });
      break;
    case 'failed':
      showStatus('failed', 'Transfer failed', reasonText(t.reason) + ' No money was moved.', { transfer: id, code: t.reason || 'failed' });
      break;
    default:
      showStatus('error', 'Unexpected answer', 'The bank gave an answer this page does not understand. Check the history before sending again.', {});
  }
}

function clearFormAfterSend() {
  $('transfer-amount').value = '';
  $('transfer-memo').value = '';
  renderAmountPreview();
  renderMemoCount();
}

start();
