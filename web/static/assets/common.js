// Shared helpers for the banksync pages. Everything the server sends is
// untrusted: it only ever reaches the page through textContent and
// attribute values, never parsed as markup.

const wonFormat = new Intl.NumberFormat('ko-KR', { style: 'currency', currency: 'KRW', maximumFractionDigits: 0 });
const numberFormat = new Intl.NumberFormat('ko-KR', { maximumFractionDigits: 0 });
const rateFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
const fullFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });

const MINUS = '\u2212';

function toNumber(n) {
  const v = typeof n === 'number' ? n : Number(n);
  return Number.isFinite(v) ? v : 0;
}

/** formatWon(1234000) → "₩1,234,000"; negative amounts get a real minus sign. */
export function formatWon(n) {
  const v = toNumber(n);
  return v < 0 ? MINUS + wonFormat.format(-v) : wonFormat.format(v);
}

/** formatSignedWon(500) → "+₩500", formatSignedWon(-500) → "−₩500". */
export function formatSignedWon(n) {
  const v = toNumber(n);
  if (v > 0) return '+' + wonFormat.format(v);
  if (v < 0) return MINUS + wonFormat.format(-v);
  return wonFormat.format(0);
}

export function formatNumber(n) {
  return numberFormat.format(toNumber(n));
}

export function formatRate(n) {
  return rateFormat.format(toNumber(n));
}

/** parseTime returns a Date or null for a missing or unreadable timestamp. */
export function parseTime(s) {
  if (!s) return null;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function formatTime(s) {
  const d = s instanceof Date ? s : parseTime(s);
  return d ? timeFormat.format(d) : '';
}

export function formatDateTime(s) {
  const d = s instanceof Date ? s : parseTime(s);
  return d ? dateTimeFormat.format(d) : '';
}

/** formatWhen shows the time of day, with the date when it is not today. */
export function formatWhen(s) {
  const d = s instanceof Date ? s : parseTime(s);
  if (!d) return '';
  return d.toDateString() === new Date().toDateString() ? timeFormat.format(d) : dateTimeFormat.format(d);
}

export function formatFull(s) {
  const d = s instanceof Date ? s : parseTime(s);
  return d ? fullFormat.format(d) : '';
}

/** formatDuration(ms) → "4s", "2m 05s", "1h 03m"; sign is the caller's. */
export function formatDuration(ms) {
  let s = Math.floor(Math.abs(ms) / 1000);
  if (s < 60) return s + 's';
  let m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return m + 'm ' + String(s).padStart(2, '0') + 's';
  const h = Math.floor(m / 60);
  m %= 60;
  if (h < 48) return h + 'h ' + String(m).padStart(2, '0') + 'm';
  return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
}

/**
 * h('li', {class: 'tx', dataset: {seq: 4}}, 'text', child) builds an element.
 * Strings become text nodes; attributes are set with setAttribute, so
 * nothing is ever parsed as HTML.
 */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.appendChild(c);
    else node.appendChild(document.createTextNode(String(c)));
  }
}

/** setText sets an element's text only when it changed (keeps selections stable). */
export function setText(node, text) {
  const t = String(text ?? '');
  if (node.textContent !== t) node.textContent = t;
}

/** setData sets data-* attributes, only when changed. */
export function setData(node, key, value) {
  const v = String(value);
  if (node.dataset[key] !== v) node.dataset[key] = v;
}

/** ApiError is what every failed request throws. status 0 means no answer. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
  /** retryable: the request may or may not have been done; sending it again is the way to know. */
  get retryable() {
    return this.status === 0 || this.status >= 500;
  }
}

/**
 * api(path, {token, method, json, headers, timeout}) sends a same-origin
 * request and returns {status, data} for a 2xx answer. Any other answer
 * throws an ApiError carrying the server's error code and message (and the
 * parsed body, which for a failed transfer holds the transfer).
 */
export async function api(path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  headers.set('Accept', 'application/json');
  if (opts.token) headers.set('Authorization', 'Bearer ' + opts.token);
  let body;
  if (opts.json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(opts.json);
  }
  let res;
  try {
    res = await fetch(path, {
      method: opts.method || 'GET',
      headers,
      body,
      credentials: 'same-origin',
      cache: 'no-store',
      signal: AbortSignal.timeout(opts.timeout || 15000),
    });
  } catch (err) {
    const timedOut = err && (err.name === 'TimeoutError' || err.name === 'AbortError');
    throw new ApiError(0, timedOut ? 'timeout' : 'network',
      timedOut ? 'The server took too long to answer.' : 'Could not reach the server. Check your connection.', null);
  }
  let data = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.ok) return { status: res.status, data: data ?? {} };
  const e = data && typeof data === 'object' && data.error && typeof data.error === 'object' ? data.error : null;
  const code = e && typeof e.code === 'string' ? e.code : 'http_' + res.status;
  const message = e && typeof e.message === 'string' && e.message
    ? e.message
    : `The server answered ${res.status} ${res.statusText || ''}`.trim() + '.';
  throw new ApiError(res.status, code, message, data);
}

/** store wraps sessionStorage; it works (in memory) when storage is refused. */
const memory = new Map();
export const session = {
  get(key) {
    try {
      return window.sessionStorage.getItem(key);
    } catch {
      return memory.has(key) ? memory.get(key) : null;
    }
  },
  set(key, value) {
    try {
      window.sessionStorage.setItem(key, value);
    } catch {
      memory.set(key, value);
    }
  },
  remove(key) {
    try {
      window.sessionStorage.removeItem(key);
    } catch {
      /* ignore */
    }
    memory.delete(key);
  },
};

/**
 * syncChildren makes parent's children be one element per item, in order,
 * reusing elements by key so that focus, disabled buttons and selections
 * survive a refresh. create(item) makes a new element; update(el, item)
 * brings it up to date (it is also called right after create).
 */
export function syncChildren(parent, items, key, create, update) {
  const existing = new Map();
  for (const child of Array.from(parent.children)) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
    else child.remove();
  }
  let prev = null;
  for (const item of items) {
    const k = String(key(item));
    let node = existing.get(k);
    if (node) existing.delete(k);
    else {
      node = create(item);
      node.dataset.key = k;
    }
    update(node, item);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (want !== node) parent.insertBefore(node, want);
    prev = node;
  }
  for (const node of existing.values()) node.remove();
}

/** decodeJwtSubject returns a token's "sub" claim for display, or ''. */
export function decodeJwtSubject(token) {
  try {
    const part = token.split('.')[1];
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const claims = JSON.parse(json);
    return typeof claims.sub === 'string' ? claims.sub : '';
  } catch {
    return '';
  }
}

/**
 * makeRefresher returns refresh(): it runs once(epoch) now — or, if a run
 * is in flight, once more after it ends, so a refresh asked for after
 * something changed always starts after the change — and then again every
 * intervalMs while state.token is set and the page is visible. A new
 * sign-in (state.epoch moved on) during a run gets its own run at once.
 * refresh.stop() cancels the next scheduled run.
 */
export function makeRefresher(state, once, intervalMs) {
  let running = null;
  let again = false;
  let timer = 0;
  function tick() {
    if (!state.token) return;
    if (document.hidden) {
      timer = setTimeout(tick, intervalMs);
      return;
    }
    refresh();
  }
  function refresh() {
    if (!state.token) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    clearTimeout(timer);
    const epoch = state.epoch;
    running = (async () => {
      try {
        do {
          again = false;
          await once(epoch);
        } while (again && epoch === state.epoch);
      } finally {
        running = null;
        if (state.token) {
          if (epoch !== state.epoch) refresh();
          else timer = setTimeout(tick, intervalMs);
        }
      }
    })();
    return running;
  }
  refresh.stop = () => clearTimeout(timer);
  return refresh;
}
