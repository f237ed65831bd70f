// cdc browser client: a dependency-free ES module (CONTRACT.md section 7).
//
//   import { CdcClient } from "/client.js";
//   const client = new CdcClient({ types: ["key_change"], prefix: ["user:"] });
//   client.status.subscribe((s) => console.log("status", s));
//   client.onKeyChanges().subscribe((ev) => console.log(ev.key, ev.operation));
//   client.connect(token);
//   client.onKey("user:1").subscribe((ev) => ...);      // one exact key
//   client.onStats().subscribe((st) => ...);             // stats frames (about once a second)
//
// Invariants:
// - Every data event (a frame with an integer `id`) is delivered at most once and in id order:
//   anything with id <= lastId is dropped, so WebSocket resumes, 4429 reconnects and the
//   long-poll fallback can overlap without duplicates.
// - Nothing is lost while the server retains it: every (re)connection and every poll resumes
//   with since=lastId. When nothing has been delivered yet, the `hello` frame's latest_id (or
//   the poll cursor) becomes the resume point, so a live-from-now client still loses nothing
//   across a reconnect.
// - A 4401/4403 close (or HTTP 401/403 while polling) stops all retries: status "unauthorized"
//   until connect() or setToken() is called again.
// - Reconnect delays use exponential backoff with full jitter, bounded by backoff.maxMs; the
//   attempt counter is reset once a connection stayed up for stableMs.
// - A connection that delivers no frame for 2 heartbeat intervals (ping + server heartbeat) is
//   declared dead and replaced.
// - Fields the server omits when they hold their default (cf "default", details {}, reason "")
//   are filled in, so every event has the fields CONTRACT.md section 4 lists.
// - The token is sent only in the WebSocket URL query (`token=`, as the seed asks) or the
//   Authorization header of polling requests; it is never logged or put into errors.

const DEFAULTS = Object.freeze({
  heartbeatMs: 15000, // used until the server's hello says otherwise
  connectTimeoutMs: 10000, // no hello within this -> the attempt failed
  backoff: Object.freeze({ baseMs: 500, maxMs: 30000 }),
  stableMs: 10000, // a connection up this long resets the backoff
  pollAfterFailures: 3, // consecutive WebSocket failures before long-polling
  pollTimeoutS: 25,
});

export const STATUSES = Object.freeze(["connected", "disconnected", "reconnecting", "polling", "unauthorized"]);

export const EVENT_TYPES = Object.freeze([
  "key_change",
  "compaction_status",
  "flush_status",
  "health_change",
  "sync_event",
  "snapshot_event",
  "capture_gap",
  "store_reset",
]);

const observableSymbol = (typeof Symbol === "function" && Symbol.observable) || "@@observable";

function reportError(err) {
  // Like RxJS: an observer that throws must not break delivery to the others.
  setTimeout(() => {
    throw err;
  }, 0);
}

/**
 * A minimal hot, multicast, observable-compatible stream.
 * subscribe(fn | {next, error, complete}) -> {unsubscribe(), closed}.
 * With `replay: true` it remembers the last value and gives it to new subscribers
 * (BehaviorSubject-like; used for `status`).
 */
export class CdcStream {
  constructor({ replay = false, initial = undefined, source = null, filter = null } = {}) {
    this._observers = new Set();
    this._replay = replay;
    this._hasValue = replay && initial !== undefined;
    this._value = initial;
    this._source = source; // derived stream: subscribes lazily to the source
    this._filter = filter;
  }

  /** Current value of a replaying stream (e.g. client.status.value). */
  get value() {
    return this._value;
  }

  subscribe(observerOrNext, error, complete) {
    let observer;
    if (typeof observerOrNext === "function") {
      observer = { next: observerOrNext, error, complete };
    } else {
      observer = observerOrNext || {};
    }
    if (this._source) {
      const filter = this._filter;
      return this._source.subscribe({
        next: (v) => {
          if (filter(v) && observer.next) observer.next(v);
        },
        error: (e) => observer.error && observer.error(e),
        complete: () => observer.complete && observer.complete(),
      });
    }
    const entry = { observer };
    this._observers.add(entry);
    const subscription = {
      closed: false,
      unsubscribe: () => {
        subscription.closed = true;
        this._observers.delete(entry);
      },
    };
    if (this._hasValue && observer.next) {
      try {
        observer.next(this._value);
      } catch (err) {
        reportError(err);
      }
    }
    return subscription;
  }

  /** Internal: push a value to every current subscriber. */
  _next(value) {
    if (this._replay) {
      this._value = value;
      this._hasValue = true;
    }
    for (const entry of Array.from(this._observers)) {
      if (!this._observers.has(entry)) continue;
      const next = entry.observer.next;
      if (!next) continue;
      try {
        next.call(entry.observer, value);
      } catch (err) {
        reportError(err);
      }
    }
  }

  [observableSymbol]() {
    return this;
  }

  ["@@observable"]() {
    return this;
  }
}

function toList(v, split = true) {
  if (v === undefined || v === null || v === "") return [];
  if (Array.isArray(v)) return v.filter((x) => x !== undefined && x !== null && x !== "").map(String);
  if (!split) return [String(v)]; // key prefixes may contain commas: a string is one prefix
  return String(v)
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

function defaultWsUrl() {
  if (typeof location === "undefined") throw new Error("CdcClient: url is required outside a browser");
  return (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws/events";
}

/** ws://host/ws/events -> http://host/events (the polling endpoint on the same port). */
function derivePollUrl(wsUrl) {
  const u = new URL(wsUrl, typeof location !== "undefined" ? location.href : undefined);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = u.pathname.replace(/\/ws\/events\/?$/, "/events");
  if (!u.pathname.endsWith("/events")) u.pathname = "/events";
  u.search = "";
  u.hash = "";
  return u.toString();
}

/**
 * The server omits fields that hold their default (msgspec omit_defaults): put them back so
 * that every event has the fields CONTRACT.md lists (`cf`, `details`, `reason`).
 */
function fillDefaults(ev) {
  switch (ev.type) {
    case "key_change":
      if (ev.cf === undefined) ev.cf = "default";
      break;
    case "compaction_status":
    case "flush_status":
      if (ev.cf === undefined) ev.cf = "default";
      if (ev.details === undefined) ev.details = {};
      break;
    case "sync_event":
    case "snapshot_event":
      if (ev.details === undefined) ev.details = {};
      break;
    case "health_change":
    case "capture_gap":
    case "store_reset":
      if (ev.reason === undefined) ev.reason = "";
      break;
    default:
  }
  return ev;
}

function isDataEvent(ev) {
  return ev !== null && typeof ev === "object" && typeof ev.id === "number" && Number.isFinite(ev.id);
}

/**
 * The cdc browser client. See CONTRACT.md section 7 and cdc.d.ts for the full API.
 */
export class CdcClient {
  /**
   * @param {object} [options]
   * @param {string} [options.url] WebSocket URL (default ws(s)://<same host>/ws/events)
   * @param {string} [options.pollUrl] long-poll URL (default derived from url: http(s)://<host>/events)
   * @param {string[]|string} [options.types] event types to receive (default all)
   * @param {string[]|string} [options.cf] column families
   * @param {string[]|string} [options.prefix] key prefixes
   * @param {number} [options.since] resume cursor: deliver events with id > since (0 = oldest retained)
   * @param {string} [options.epoch] the journal identity `since` belongs to (hello.epoch); another
   *   journal answers with a reset (reason "epoch_changed") instead of events under reused ids
   * @param {boolean} [options.values] ask for values (the token must allow it)
   * @param {boolean} [options.batch] let the server send arrays of events per frame (default true)
   * @param {string[]|string} [options.key] exact keys (a string is one key, never split)
   * @param {number} [options.coalesce] ms: at most one key_change per key per window, the latest
   * @param {string} [options.skipOrigin] key_changes whose `origin` equals this are not emitted
   */
  constructor(options = {}) {
    const o = options || {};
    this.url = o.url || defaultWsUrl();
    this.pollUrl = o.pollUrl || derivePollUrl(this.url);
    this._filter = { types: toList(o.types), cf: toList(o.cf), prefix: toList(o.prefix, false), key: toList(o.key, false) };
    /** coalesce=MS: the server sends at most one key_change per key per window (0: off). */
    this.coalesce = Number.isInteger(o.coalesce) && o.coalesce > 0 ? o.coalesce : 0;
    /** Your own writer's origin: its key_changes are not emitted (lastId still advances). */
    this.skipOrigin = typeof o.skipOrigin === "string" && o.skipOrigin !== "" ? o.skipOrigin : null;
    this.values = !!o.values;
    // Default on: Chromium pays ~0.1 ms per WebSocket frame, so one array frame per burst
    // delivers ~20x more events/s than one frame per event (bench/bench_frontend.py).
    this.batch = o.batch === undefined ? true : !!o.batch;
    this.heartbeatMs = o.heartbeatMs || null; // null: take hello.heartbeat_ms
    this.connectTimeoutMs = o.connectTimeoutMs || DEFAULTS.connectTimeoutMs;
    this.backoff = { ...DEFAULTS.backoff, ...(o.backoff || {}) };
    this.stableMs = o.stableMs ?? DEFAULTS.stableMs;
    this.pollAfterFailures = o.pollAfterFailures ?? DEFAULTS.pollAfterFailures;
    this.pollTimeoutS = o.pollTimeoutS ?? DEFAULTS.pollTimeoutS;
    this.polling = o.polling !== false; // false: never fall back to long-polling
    this._getToken = typeof o.getToken === "function" ? o.getToken : null;
    this._WebSocket = o.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
    this._fetch = o.fetch || (typeof fetch !== "undefined" ? fetch.bind(globalThis) : null);

    /** Resume cursor: id of the last event delivered (or the server position when none yet). */
    this.lastId = typeof o.since === "number" && o.since >= 0 ? o.since : null;
    /** Identity of the journal lastId belongs to (from hello / poll answers); sent with since. */
    this.epoch = typeof o.epoch === "string" && o.epoch ? o.epoch : null;
    /** Information from the last hello frame ({version, latest_id, heartbeat_ms, ...}). */
    this.server = null;
    /** Counters, handy for dashboards and tests. */
    this.stats = { wsAttempts: 0, wsOpened: 0, polls: 0, delivered: 0, duplicates: 0, reconnects: 0, skipped: 0 };
    /** The last `stats` frame received (see onStats()), or null. */
    this.latestStats = null;

    this.events = new CdcStream();
    this.status = new CdcStream({ replay: true, initial: "disconnected" });
    this.resets = new CdcStream();
    this.errors = new CdcStream();
    this.control = new CdcStream();
    this._statsFrames = new CdcStream();
    this._typed = new Map();
    this._keyed = new Map();

    this._token = null;
    this._active = false; // connect() called and not disconnect()ed / unauthorized
    this._ws = null;
    this._wsHello = false;
    this._attempt = 0; // backoff attempt counter
    this._failuresBeforeHello = 0;
    this._retryTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._deadTimer = null;
    this._stableTimer = null;
    this._refreshTimer = null;
    this._opening = null;
    this._authRetried = false;
    this._lastRecv = 0;
    this._pollAbort = null;
    this._pollLoopToken = null;
    this._pollMode = false;
    this._generation = 0; // bumps on connect()/disconnect() to orphan stale callbacks

    this._onWake = () => {
      // Tab became visible / network came back: retry now instead of waiting out the backoff.
      if (!this._active || this._ws) return;
      if (typeof document !== "undefined" && document.visibilityState === "hidden") return;
      this._clearRetry();
      this._openWebSocket();
    };
  }

  // ------------------------------------------------------------------ public API

  /** Current status: connected | disconnected | reconnecting | polling | unauthorized. */
  get state() {
    return this.status.value;
  }

  /** The filter in effect ({types, cf, prefix, key} as arrays). */
  get filter() {
    const f = this._filter;
    return { types: [...f.types], cf: [...f.cf], prefix: [...f.prefix], key: [...f.key] };
  }

  /** (Re)connect with `token`, resuming from lastId. Safe to call repeatedly. */
  connect(token) {
    if (token !== undefined) this._token = token;
    this._teardown();
    this._generation++;
    this._active = true;
    this._attempt = 0;
    this._failuresBeforeHello = 0;
    this._pollMode = false;
    if (typeof window !== "undefined" && window.addEventListener) {
      window.addEventListener("online", this._onWake);
      if (typeof document !== "undefined") document.addEventListener("visibilitychange", this._onWake);
    }
    this._openWebSocket();
  }

  /** Close everything and stop retrying. lastId is kept, so connect() resumes. */
  disconnect() {
    this._active = false;
    this._generation++;
    this._teardown();
    if (typeof window !== "undefined" && window.removeEventListener) {
      window.removeEventListener("online", this._onWake);
      if (typeof document !== "undefined") document.removeEventListener("visibilitychange", this._onWake);
    }
    this._setStatus("disconnected");
  }

  /**
   * Replace the token (e.g. after a refresh). An open WebSocket gets {"op":"auth","token":t};
   * later reconnects and polls use it. After "unauthorized" this reconnects.
   */
  setToken(token) {
    this._token = token;
    if (this._ws && this._wsHello) this._send({ op: "auth", token });
    if (this.status.value === "unauthorized") this.connect();
  }

  /**
   * Change the filter at runtime ({types, cf, prefix, key, values}; omitted keys are kept). Sent to
   * the server on the open WebSocket (it answers `subscribed`) and used by every later reconnect/poll.
   */
  subscribe(filter = {}) {
    for (const k of ["types", "cf", "prefix", "key"]) {
      if (filter[k] !== undefined) this._filter[k] = toList(filter[k], k !== "prefix" && k !== "key");
    }
    if (filter.values !== undefined) this.values = !!filter.values;
    if (this._ws && this._wsHello) {
      // An empty list means "everything" (null on the wire; [] would match nothing).
      const f = this._filter;
      const wire = (l) => (l.length ? l : null);
      this._send({ op: "subscribe", types: wire(f.types), cf: wire(f.cf), prefix: wire(f.prefix), key: wire(f.key), values: this.values });
    }
    if (this._pollAbort) this._pollAbort.abort(); // restart the current long-poll with the new filter
  }

  /** Stream of events of one type (or several). */
  on(...types) {
    const key = types.join(",");
    let s = this._typed.get(key);
    if (!s) {
      const set = new Set(types);
      s = new CdcStream({ source: this.events, filter: (ev) => set.has(ev.type) });
      this._typed.set(key, s);
    }
    return s;
  }

  onKeyChanges() {
    return this.on("key_change");
  }

  onCompactionEvents() {
    return this.on("compaction_status");
  }

  onFlushEvents() {
    return this.on("flush_status");
  }

  onHealthEvents() {
    return this.on("health_change");
  }

  onSyncEvents() {
    return this.on("sync_event");
  }

  onSnapshotEvents() {
    return this.on("snapshot_event");
  }

  onCaptureGaps() {
    return this.on("capture_gap");
  }

  /**
   * key_changes of one exact key. When a key filter is in use, the key is added to it (the
   * server then sends it too); without one, the stream filters what the current filter brings.
   */
  onKey(key) {
    const k = String(key);
    if (this._filter.key.length && !this._filter.key.includes(k)) this.subscribe({ key: [...this._filter.key, k] });
    let s = this._keyed.get(k);
    if (!s) {
      s = new CdcStream({ source: this.events, filter: (ev) => ev.type === "key_change" && ev.key === k });
      this._keyed.set(k, s);
    }
    return s;
  }

  /**
   * `stats` frames (no id; about once a second). Asks the server for them: "stats" is added to
   * the types filter (an empty filter becomes every built-in type plus "stats": list custom
   * dotted types yourself if you want them too).
   */
  onStats() {
    const t = this._filter.types;
    if (!t.includes("stats")) this.subscribe({ types: [...(t.length ? t : EVENT_TYPES), "stats"] });
    return this._statsFrames;
  }

  // ------------------------------------------------------------------ internals

  _setStatus(s) {
    if (this.status.value !== s) this.status._next(s);
  }

  async _currentToken() {
    if (this._getToken) {
      try {
        const t = await this._getToken();
        if (t) this._token = t;
      } catch (err) {
        this.errors._next({ type: "error", reason: "getToken failed", detail: String(err && err.message) });
      }
    }
    return this._token;
  }

  _query(extra) {
    const q = new URLSearchParams();
    if (this.lastId !== null) q.set("since", String(this.lastId));
    if (this.lastId !== null && this.epoch) q.set("epoch", this.epoch);
    const f = this._filter;
    if (f.types.length) q.set("types", f.types.join(","));
    if (f.cf.length) q.set("cf", f.cf.join(","));
    for (const p of f.prefix) q.append("prefix", p); // repeated: prefixes are not split on commas
    for (const k of f.key) q.append("key", k);
    if (this.values) q.set("values", "1");
    if (this.coalesce) q.set("coalesce", String(this.coalesce));
    for (const [k, v] of Object.entries(extra || {})) if (v !== undefined && v !== null) q.set(k, String(v));
    return q;
  }

  _withQuery(base, q) {
    const u = new URL(base, typeof location !== "undefined" ? location.href : undefined);
    for (const k of new Set(q.keys())) u.searchParams.delete(k);
    for (const [k, v] of q) u.searchParams.append(k, v);
    return u.toString();
  }

  _teardown() {
    this._clearRetry();
    this._closeWs(1000, "client disconnect");
    this._stopPolling();
  }

  _clearRetry() {
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._retryTimer = null;
  }

  _clearConnTimers() {
    for (const t of ["_connectTimer", "_deadTimer", "_stableTimer", "_refreshTimer"]) {
      if (this[t]) clearTimeout(this[t]);
      this[t] = null;
    }
    if (this._pingTimer) clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  _closeWs(code, reason) {
    this._clearConnTimers();
    const ws = this._ws;
    this._ws = null;
    this._wsHello = false;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }

  _send(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  async _openWebSocket() {
    const gen = this._generation;
    if (!this._active || this._opening === gen) return;
    this._opening = gen; // one attempt at a time per connect(), even while getToken() is pending
    let token;
    try {
      token = await this._currentToken();
    } finally {
      if (this._opening === gen) this._opening = null;
    }
    if (gen !== this._generation || !this._active || this._ws) return;
    const q = this._query({ batch: this.batch ? 1 : undefined });
    if (token) q.set("token", token);
    let ws;
    this.stats.wsAttempts++;
    try {
      ws = new this._WebSocket(this._withQuery(this.url, q));
    } catch (err) {
      this._wsFailed(true, null); // e.g. a URL the browser refuses: counts toward polling
      return;
    }
    this._ws = ws;
    this._wsHello = false;
    this._lastRecv = Date.now();
    this._connectTimer = setTimeout(() => {
      if (this._ws === ws && !this._wsHello) this._wsFailed(true, null);
    }, this.connectTimeoutMs);
    ws.onopen = () => {
      this.stats.wsOpened++;
    };
    ws.onmessage = (msg) => {
      if (this._ws !== ws) return;
      this._lastRecv = Date.now();
      if (typeof msg.data !== "string") return; // format=msgpack is not used by this client
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch {
        this.errors._next({ type: "error", reason: "unparseable frame from server" });
        return;
      }
      if (Array.isArray(data)) {
        for (const item of data) this._handleFrame(item, "ws");
      } else {
        this._handleFrame(data, "ws");
      }
    };
    ws.onerror = () => {
      /* the close event follows with the details */
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._onWsClose(ev.code, ev.reason);
    };
  }

  _onHello(frame) {
    this._wsHello = true;
    this.server = frame;
    if (this._connectTimer) clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._failuresBeforeHello = 0;
    this._authRetried = false;
    // Another journal than our cursor's: the server sends a reset (epoch_changed) right after.
    const otherJournal = this.lastId !== null && !!this.epoch && typeof frame.epoch === "string" && frame.epoch !== this.epoch;
    if (typeof frame.epoch === "string") this.epoch = frame.epoch;
    if (this.lastId === null && typeof frame.latest_id === "number") {
      this.lastId = frame.latest_id; // live from here; a reconnect resumes without a gap
    } else if (!otherJournal && this.lastId !== null && typeof frame.latest_id === "number" && frame.latest_id < this.lastId) {
      // The server's journal is behind our cursor (state wiped/restored): our position is
      // meaningless there. Tell the app to refetch and follow the server from now on.
      const reset = { type: "reset", reason: "cursor_ahead", latest_id: frame.latest_id, last_id: this.lastId };
      this.lastId = frame.latest_id;
      this.resets._next(reset);
    }
    const hb = this.heartbeatMs || frame.heartbeat_ms || DEFAULTS.heartbeatMs;
    this._hbMs = hb;
    this._pingTimer = setInterval(() => this._send({ op: "ping" }), hb);
    this._armDeadTimer();
    this._stableTimer = setTimeout(() => {
      this._attempt = 0; // stable: the next outage starts with short delays again
    }, this.stableMs);
    this._scheduleRefresh(frame.exp);
    this._stopPolling();
    this._pollMode = false;
    this._setStatus("connected");
  }

  /** With getToken: fetch a fresh token shortly before `exp` (seconds) and send {"op":"auth"}. */
  _scheduleRefresh(exp) {
    if (this._refreshTimer) clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
    if (!this._getToken || typeof exp !== "number") return;
    // 30 s (or a tenth of the remaining life) before expiry.
    const left = exp * 1000 - Date.now();
    const wait = Math.max(0, left - Math.min(30000, left / 10));
    this._refreshTimer = setTimeout(async () => {
      this._refreshTimer = null;
      const old = this._token;
      const t = await this._currentToken();
      if (t && t !== old && this._ws && this._wsHello) this._send({ op: "auth", token: t });
    }, wait);
  }

  _armDeadTimer() {
    const limit = 2 * this._hbMs;
    const wait = Math.max(10, this._lastRecv + limit - Date.now());
    this._deadTimer = setTimeout(() => {
      this._deadTimer = null;
      if (!this._ws || !this._wsHello) return;
      if (Date.now() - this._lastRecv >= limit) {
        this.errors._next({ type: "error", reason: "connection dead: no frame for 2 heartbeat intervals" });
        this._closeWs(4000, "heartbeat timeout");
        this._scheduleReconnect();
      } else {
        this._armDeadTimer();
      }
    }, wait);
  }

  _handleFrame(frame, via) {
    if (frame === null || typeof frame !== "object") return;
    if (isDataEvent(frame)) {
      this._deliver(frame);
      return;
    }
    const type = frame.type;
    if (type === "stats") {
      this._onStats(frame);
      return;
    }
    if (type === "hello" && via === "ws") this._onHello(frame);
    if (type === "authenticated") this._scheduleRefresh(frame.exp);
    if (type === "reset") {
      // The server continues live after latest_id: follow it (a cursor of another journal may
      // be above the new ids, which would otherwise be dropped as duplicates).
      if (typeof frame.latest_id === "number") this.lastId = frame.latest_id;
      if (typeof frame.epoch === "string") this.epoch = frame.epoch;
      this.resets._next(frame);
    }
    if (type === "error") this.errors._next(frame);
    if (typeof type === "string") this.control._next(frame);
  }

  _onStats(frame) {
    const last = this.latestStats;
    if (last && typeof frame.timestamp === "number" && frame.timestamp <= last.timestamp) return; // a poll repeating it
    this.latestStats = frame;
    this._statsFrames._next(frame);
  }

  _deliver(ev) {
    if (this.lastId !== null && ev.id <= this.lastId) {
      this.stats.duplicates++;
      return;
    }
    this.lastId = ev.id;
    if (this.skipOrigin !== null && ev.type === "key_change" && ev.origin === this.skipOrigin) {
      this.stats.skipped++; // your own write: consumed, not emitted
      return;
    }
    this.stats.delivered++;
    this.events._next(fillDefaults(ev));
  }

  _onWsClose(code, reason) {
    const hadHello = this._wsHello;
    this._closeWs();
    if (!this._active) return;
    if (code === 4401 && hadHello && this._getToken && !this._authRetried) {
      // The token expired on a working connection: one new attempt with getToken()'s token.
      // If that one is refused too, it ends as "unauthorized" (no retry loop).
      this._authRetried = true;
      this.errors._next({ type: "error", code, reason: reason || "unauthorized" });
      this._wsFailed(false, code);
      return;
    }
    if (code === 4401 || code === 4403) {
      this._unauthorized({ type: "error", code, reason: reason || (code === 4401 ? "unauthorized" : "forbidden") });
      return;
    }
    if (code === 4400) {
      // The request itself is wrong (bad filter/parameter): retrying cannot help.
      this.disconnect();
      this.errors._next({ type: "error", code, reason: reason || "bad request" });
      return;
    }
    if (code && code !== 1000 && code !== 1005 && code !== 1006) {
      this.errors._next({ type: "error", code, reason: reason || "closed" });
    }
    this._wsFailed(!hadHello, code);
  }

  _unauthorized(err) {
    this._active = false;
    this._generation++;
    this._teardown();
    this.errors._next(err);
    this._setStatus("unauthorized");
  }

  /** A WebSocket attempt ended; beforeHello: it never became usable. */
  _wsFailed(beforeHello, code) {
    this._closeWs();
    if (!this._active) return;
    if (beforeHello) this._failuresBeforeHello++;
    if (this.polling && this._failuresBeforeHello >= this.pollAfterFailures) this._startPolling();
    // 4429 (too slow) and 1001 (server going away) after a working connection: retry promptly.
    this._scheduleReconnect();
  }

  _backoffDelay() {
    const cap = Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** Math.min(this._attempt, 30));
    this._attempt++;
    return Math.floor(Math.random() * cap); // full jitter
  }

  _scheduleReconnect() {
    if (!this._active || this._retryTimer) return;
    if (!this._pollMode) this._setStatus("reconnecting");
    this.stats.reconnects++;
    const delay = this._backoffDelay();
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._openWebSocket();
    }, delay);
  }

  // ------------------------------------------------------------------ long-poll fallback

  _startPolling() {
    if (this._pollMode) return;
    this._pollMode = true;
    this._setStatus("polling");
    const loop = {};
    this._pollLoopToken = loop; // an older loop sees a different token and ends
    this._pollLoop(this._generation, loop);
  }

  _stopPolling() {
    this._pollMode = false;
    if (this._pollAbort) this._pollAbort.abort();
    this._pollAbort = null;
  }

  async _pollLoop(gen, loop) {
    let failures = 0;
    const live = () => this._active && this._pollMode && gen === this._generation && this._pollLoopToken === loop;
    while (live()) {
      const token = await this._currentToken();
      const q = this._query({ timeout: this.pollTimeoutS });
      const abort = new AbortController();
      this._pollAbort = abort;
      const timer = setTimeout(() => abort.abort(), (this.pollTimeoutS + 10) * 1000);
      let res;
      try {
        this.stats.polls++;
        res = await this._fetch(this._withQuery(this.pollUrl, q), {
          headers: token ? { Authorization: "Bearer " + token } : {},
          signal: abort.signal,
          cache: "no-store",
        });
      } catch (err) {
        res = null;
      } finally {
        clearTimeout(timer);
        if (this._pollAbort === abort) this._pollAbort = null;
      }
      if (!live()) break;
      if (abort.signal.aborted && !res) continue; // filter change or timeout: poll again
      if (res && (res.status === 401 || res.status === 403)) {
        this._unauthorized({ type: "error", code: res.status === 401 ? 4401 : 4403, reason: "unauthorized" });
        break;
      }
      let body = null;
      if (res && res.ok) {
        try {
          body = await res.json();
        } catch {
          body = null;
        }
      }
      if (!live()) break;
      if (!body) {
        failures++;
        this._setStatus("reconnecting");
        const cap = Math.min(this.backoff.maxMs, this.backoff.baseMs * 2 ** Math.min(failures, 30));
        await new Promise((r) => setTimeout(r, Math.random() * cap));
        continue;
      }
      failures = 0;
      this._setStatus("polling");
      if (typeof body.epoch === "string") this.epoch = body.epoch;
      if (body.reset) {
        if (typeof body.cursor === "number") this.lastId = body.cursor; // the server's position now
        this.resets._next({ type: "reset", ...body.reset });
      }
      for (const ev of body.events || []) this._deliver(ev);
      if (body.stats && typeof body.stats === "object") this._onStats(body.stats);
      if (typeof body.cursor === "number" && (this.lastId === null || body.cursor > this.lastId)) {
        // The server scanned up to cursor for our filter: resume from there.
        this.lastId = body.cursor;
      }
    }
  }
}

export default CdcClient;
