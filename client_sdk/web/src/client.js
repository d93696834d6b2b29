/**
 * The web client: {@link Tidings.connect}, subscriptions, and the loop that keeps every
 * channel's changes flowing once and in order through reconnects, fallback to polling,
 * credential renewal and the 24 h connection limit.
 *
 * The behaviour is the Python client's (`client_sdk/_core.py`), in JavaScript's single thread:
 * every event (a pushed message, a fill's answer, a connection opened or lost, a timer) is
 * handled to its end before the next, so the per-channel ordering ({@link ChannelOrder}) never
 * races. Each channel hands its changes to the application through a queue of its own: a
 * callback that returns a promise is awaited before the next change, and a channel whose
 * application has fallen `maxBufferedChanges` behind stops taking pushes and reads them from
 * the API once the application has caught up (nothing is lost, nothing is held in memory
 * without bound).
 *
 * @module
 */

import { ChannelsApi } from "./api.js";
import {
  AccessDenied,
  BadRequest,
  ClientClosed,
  ConnectTimeout,
  ContinuityBroken,
  CursorExpired,
  RateLimited,
  ServiceUnavailable,
  SignInFailed,
  TidingsError,
} from "./errors.js";
import { ChannelOrder } from "./ordering.js";
import { CredentialSource } from "./session.js";
import { presignUrl } from "./sigv4.js";
import { MqttConnection } from "./transport.js";

/** @typedef {import("./session.js").SignIn} SignIn */
/** @typedef {import("./ordering.js").Envelope} Envelope */
/** @typedef {import("./ordering.js").Action} Action */

/**
 * One change of one channel, delivered once and in `seq` order: the envelope the publisher
 * builds (`op` insert, modify or remove; `keys`, `new`, `old` the item's images).
 * @typedef {{ v: number, channel: string, seq: number, epoch: number, id: string,
 *   op: "insert" | "modify" | "remove", keys: Record<string, unknown>,
 *   new: Record<string, unknown> | null, old?: Record<string, unknown> | null, at: number,
 *   expired?: boolean }} Change
 */

/**
 * Where a channel is when continuity was lost. `reason`: `cursor_expired` (older than the
 * retention), `epoch_changed` (the log was reset), `gap_in_log`, or `access_denied`.
 * @typedef {{ head: number, epoch: number, reason: string }} ContinuityLost
 */

/**
 * The connection state: `connecting` (signed in, opening the first connection), `live` (push
 * up, every channel current), `catching_up` (push up, reading what was missed), `polling` (no
 * push; long-polling the API works), `offline` (neither works right now; retrying), or
 * `signed_out` (closed, or signing in again was refused).
 * @typedef {"connecting" | "live" | "catching_up" | "polling" | "offline" | "signed_out"} ConnectionState
 */

/**
 * A `localStorage`-like store for cursors, so a reloaded page resumes where it was.
 * @typedef {{ getItem(key: string): string | null, setItem(key: string, value: string): void }} CursorStorage
 */

/**
 * How the client behaves; every field has a production default.
 * @typedef {object} ClientOptions
 * @property {string | null} [cognitoEndpoint] Cognito Identity's endpoint (default: the
 *   region's public one; the local stack prints its own).
 * @property {number} [connectTimeoutMs] How long `connect()` waits for push or a working poll (15 000).
 * @property {number} [refreshMarginMs] Renew credentials and tokens this long before they expire
 *   (300 000; at most a quarter of their lifetime).
 * @property {number} [maxConnectionAgeMs] Renew the push connection at this age (23.5 h; AWS
 *   IoT closes WebSockets at 24 h).
 * @property {number} [fallbackAfterMs] Poll the API after this long without push (10 000)...
 * @property {number} [fallbackAfterFailures] ...or after this many failed connects in a row (3).
 * @property {number} [pollWaitS] How long one long-poll may wait (20, the API's limit).
 * @property {number} [fillLimit] Changes per API read (1 to 1000).
 * @property {number} [minBackoffMs] Reconnect backoff: the first delay (jittered, doubling; 500)...
 * @property {number} [maxBackoffMs] ...and the longest (20 000).
 * @property {number} [keepAliveS] MQTT keep-alive (60; AWS IoT allows 30 to 1200).
 * @property {number} [reorderWindowMs] How long a hole left by a push waits for reordered
 *   pushes before it is filled from the API (200).
 * @property {number} [maxBufferedChanges] Changes a channel holds for a slow consumer before it
 *   stops taking pushes and reads them later from the API (1000).
 * @property {CursorStorage | null} [storage] Where to keep each channel's cursor (e.g.
 *   `localStorage`); a subscription without `after` resumes from it. Null: not kept.
 * @property {typeof globalThis.fetch} [fetch] The `fetch` to use (default: the global one).
 * @property {typeof globalThis.WebSocket} [WebSocket] The `WebSocket` class (default: the global
 *   one; Node 20 needs `--experimental-websocket` or a class such as `ws`'s).
 */

/**
 * Options of {@link Tidings#subscribe}.
 * @typedef {{ after?: number,
 *   onContinuityLost?: (channel: string, lost: ContinuityLost) => void }} SubscribeOptions
 */

const DEFAULTS = {
  cognitoEndpoint: /** @type {string | null} */ (null),
  connectTimeoutMs: 15_000,
  refreshMarginMs: 300_000,
  maxConnectionAgeMs: 23.5 * 3600 * 1000,
  fallbackAfterMs: 10_000,
  fallbackAfterFailures: 3,
  pollWaitS: 20,
  fillLimit: 1000,
  minBackoffMs: 500,
  maxBackoffMs: 20_000,
  keepAliveS: 60,
  reorderWindowMs: 200,
  maxBufferedChanges: 1000,
  storage: /** @type {CursorStorage | null} */ (null),
};

const TICK_MS = 500;
/** One channel segment, as the API allows it (backend/routes.py CHANNEL_SEGMENT). */
const CHANNEL_SEGMENT = /^(?!\.+$)[A-Za-z0-9_.:@=-]{1,128}$/;
const UTF8 = new TextDecoder();
/** Pages read ahead while a channel catches up from far behind (beside the one it waits for). */
const READ_AHEAD_PAGES = 2;
const PING_TIMEOUT_MS = 3000;

/** @param {number} n @returns {string} */
function randomHex(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(Math.ceil(n / 2)));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("").slice(0, n);
}

/**
 * @template T
 * @param {T} value
 * @returns {value is T & PromiseLike<unknown>}
 */
function isThenable(value) {
  return typeof (/** @type {any} */ (value)?.then) === "function";
}

/**
 * What a channel's queue holds: a change, or news that continuity was lost.
 * @typedef {{ change: Change } | { lost: ContinuityLost }} Item
 */

/**
 * One channel's queue to the application: items in order, one at a time; a sink that returns
 * a promise is awaited before the next item.
 */
class Delivery {
  /** @param {(item: Item) => unknown} sink */
  constructor(sink) {
    this.sink = sink;
    /** @type {Item[]} */
    this.queue = [];
    this.running = false;
    this.stopped = false;
    /** @type {{ below: number, then: () => void } | null} */
    this.whenBelow = null;
  }

  /** @param {Item} item @returns {number} the backlog */
  put(item) {
    if (this.stopped) return 0;
    this.queue.push(item);
    if (!this.running) void this.pump();
    return this.queue.length;
  }

  async pump() {
    this.running = true;
    while (this.queue.length > 0 && !this.stopped) {
      const item = /** @type {Item} */ (this.queue.shift());
      try {
        const result = this.sink(item);
        if (isThenable(result)) await result;
      } catch (error) {
        reportError(error);
      }
      this.checkBelow();
    }
    this.running = false;
    this.checkBelow();
  }

  checkBelow() {
    const waiter = this.whenBelow;
    if (waiter && this.queue.length <= waiter.below) {
      this.whenBelow = null;
      waiter.then();
    }
  }
}

/** @param {unknown} error */
function reportError(error) {
  const report = /** @type {any} */ (globalThis).reportError;
  if (typeof report === "function") report(error);
  else console.error("tidings: a callback failed:", error);
}

/**
 * One subscribed channel, as the loop keeps it.
 * @typedef {object} ChannelState
 * @property {string} name
 * @property {string} topic
 * @property {ChannelOrder} order
 * @property {Delivery} delivery
 * @property {boolean} ready
 * @property {Envelope[]} early
 * @property {boolean} closed
 * @property {number} cursor the last seq handed to the application
 * @property {number | null} epoch
 * @property {number} fillFailures
 * @property {number} head the highest head the API has said
 * @property {Map<number, { epoch: number | null, page: Promise<import("./api.js").ChangesPage> }>} readAhead
 *   pages asked for before the ordering needs them, by their `after`
 * @property {number} longPollAt no long-poll before then (ms): the API said so
 * @property {boolean} held
 * @property {boolean} catchingUp
 * @property {boolean} longPolling
 * @property {ReturnType<typeof setTimeout> | undefined} retryTimer
 * @property {ReturnType<typeof setTimeout> | undefined} gapTimer
 */

/** A subscription: its channel, its cursor, and `close()`. */
export class Subscription {
  /** @param {Tidings} client @param {ChannelState} state */
  constructor(client, state) {
    /** @private */
    this._client = client;
    /** @private */
    this._state = state;
    /** The channel, `users/me/…` expanded to the identity id. */
    this.channel = state.name;
  }

  /** The last `seq` handed to the application (resume from it with `after`). */
  get cursor() {
    return this._state.cursor;
  }

  /** The channel's epoch (null until known). */
  get epoch() {
    return this._state.epoch;
  }

  /** Stop receiving the channel (idempotent). */
  close() {
    this._client._unsubscribe(this._state);
  }
}

/**
 * A connected client. Make one with {@link Tidings.connect}; end it with {@link Tidings#close}.
 */
export class Tidings {
  /**
   * Sign in, open the push connection (or fall back to polling) and return the client.
   *
   * ```js
   * const t = await Tidings.connect(apiUrl, { method: "password", username, password });
   * ```
   * @param {string} apiUrl the HTTP API's URL (`tidings up` and `tidings deploy` print it)
   * @param {SignIn} signIn
   * @param {ClientOptions} [options]
   * @returns {Promise<Tidings>}
   * @throws {SignInFailed} the sign-in was refused; {@link AccessDenied} AWS IoT refused the
   *   connection; {@link ConnectTimeout} neither push nor polling worked in time
   */
  static async connect(apiUrl, signIn, options = {}) {
    const client = new Tidings(apiUrl, signIn, options);
    try {
      await client._start();
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /**
   * Use {@link Tidings.connect}.
   * @param {string} apiUrl
   * @param {SignIn} signIn
   * @param {ClientOptions} options
   */
  constructor(apiUrl, signIn, options) {
    const settings = { ...DEFAULTS, ...options };
    /** @private */
    this._o = settings;
    /** @private */
    this._fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    /** @private */
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    /** @private */
    this._credentials = new CredentialSource({
      fetch: this._fetch,
      apiUrl,
      signIn,
      cognitoEndpoint: settings.cognitoEndpoint,
      refreshMarginMs: settings.refreshMarginMs,
    });
    /** @private @type {ChannelsApi | null} */
    this._api = null;
    /** @private @type {Map<string, ChannelState>} */
    this._channels = new Map();
    /** @private @type {"connecting" | "push" | "down" | "poll" | "signed_out"} */
    this._link = "connecting";
    /** @private */
    this._pollOk = false;
    /** @private */
    this._probing = false;
    /** @private */
    this._failures = 0;
    /** @private @type {number | null} */
    this._downSince = Date.now();
    /** @private @type {MqttConnection | null} */
    this._conn = null;
    /** @private @type {MqttConnection[]} */
    this._retiring = [];
    /** @private */
    this._opening = false;
    /** @private */
    this._connectedAt = 0;
    /** @private */
    this._upOnce = false;
    /** @private @type {TidingsError | null} */
    this._fatal = null;
    /** @private */
    this._lastFailure = "";
    /** @private */
    this._closed = false;
    /** @private @type {ConnectionState} */
    this._state = "connecting";
    /** @private @type {Set<(state: ConnectionState) => void>} */
    this._stateListeners = new Set();
    /** @private @type {(() => void) | null} */
    this._wake = null;
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */
    this._reconnectTimer = undefined;
    /** @private @type {ReturnType<typeof setInterval> | undefined} */
    this._ticker = undefined;
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */
    this._flushTimer = undefined;
    /** @private @type {Array<() => void>} */
    this._unlisten = [];
    /** @private */
    this._stats = { pushed: 0, filled: 0, duplicates: 0, reconnects: 0, polls: 0, renewals: 0, holds: 0 };
  }

  /**
   * A snapshot of the counters: changes `pushed`, `filled` from the API and `duplicates`
   * dropped; `reconnects`, `polls`, connection `renewals`, `holds` for a slow consumer;
   * `logins` and credential `refreshes`; `apiCalls`.
   */
  get stats() {
    const credentials = this._credentials;
    return {
      ...this._stats,
      logins: credentials.logins,
      refreshes: credentials.refreshes,
      apiCalls: this._api?.calls ?? 0,
    };
  }

  /** The current connection state. @returns {ConnectionState} */
  get state() {
    return this._state;
  }

  /** The signed-in Cognito identity's id (the `me` of `users/me/…`). */
  get identityId() {
    return this._credentials.session?.identityId ?? "";
  }

  /** The channels the identity may read, as the login answered them. @returns {string[]} */
  get channels() {
    return [...(this._credentials.session?.channels ?? [])];
  }

  /** The identity's current temporary AWS credentials (renewed as needed), e.g. to write to
   * DynamoDB from the page. @returns {Promise<import("./session.js").Credentials>} */
  credentials() {
    return this._credentials.get();
  }

  /** The AWS region of the deployment. */
  get region() {
    return this._credentials.session?.region ?? "";
  }

  /**
   * Listen to the client's events: `"state"` is called with each new {@link ConnectionState}
   * (and at once with the current one). Returns a function that removes the listener.
   * @param {"state"} event
   * @param {(state: ConnectionState) => void} listener
   * @returns {() => void}
   */
  on(event, listener) {
    if (event !== "state") {
      throw new TypeError(`unknown event ${JSON.stringify(event)}; the client emits "state"`);
    }
    this._stateListeners.add(listener);
    try {
      listener(this._state);
    } catch (error) {
      reportError(error);
    }
    return () => this._stateListeners.delete(listener);
  }

  /**
   * Receive `channel`'s changes, each once and in order, into `onChange`.
   *
   * `users/me/…` names the identity's own channels. Without `after`, changes from now on (or,
   * with `storage`, after the kept cursor); with `after`, every change after that `seq` first.
   * `onChange` may return a promise: the next change waits for it.
   * @param {string} channel
   * @param {(change: Change) => unknown} onChange
   * @param {SubscribeOptions} [options]
   * @returns {Promise<Subscription>}
   * @throws {AccessDenied} the identity may not read the channel
   */
  async subscribe(channel, onChange, options = {}) {
    const { after, onContinuityLost } = options;
    if (typeof onChange !== "function") {
      throw new TypeError("subscribe(channel, onChange): onChange must be a function");
    }
    const name = this._expand(channel);
    this._checkChannel(channel, name);
    const sink = (/** @type {Item} */ item) => {
      if ("change" in item) return onChange(item.change);
      if (onContinuityLost) return onContinuityLost(name, item.lost);
      console.warn(`tidings: continuity lost on ${name}`, item.lost);
      return undefined;
    };
    return new Subscription(this, await this._subscribe(name, sink, after));
  }

  /**
   * The changes of `channel` as an async iterator: `for await (const change of t.changes(c))`.
   * Ends when the client closes; throws {@link ContinuityBroken} when continuity is lost.
   * Leaving the loop (`break`) ends the subscription.
   * @param {string} channel
   * @param {{ after?: number }} [options]
   * @returns {AsyncIterable<Change>}
   */
  changes(channel, options = {}) {
    const client = this;
    const name = this._expand(channel);
    this._checkChannel(channel, name);
    return {
      [Symbol.asyncIterator]() {
        /** @type {Array<{ item: Item, taken: () => void }>} */
        const inbox = [];
        /** @type {(() => void) | null} */
        let arrived = null;
        /** @type {Promise<ChannelState> | null} */
        let subscribing = null;
        let finished = false;
        const sink = (/** @type {Item} */ item) =>
          new Promise((taken) => {
            inbox.push({ item, taken: () => taken(undefined) });
            arrived?.();
          });
        /** @returns {Promise<IteratorResult<Change>>} */
        const finish = async () => {
          finished = true;
          if (subscribing) client._unsubscribe(await subscribing.catch(() => null));
          for (const entry of inbox.splice(0)) entry.taken();
          arrived?.();
          return { done: true, value: undefined };
        };
        return {
          async next() {
            if (finished) return { done: true, value: undefined };
            subscribing ??= client._subscribe(name, sink, options.after);
            await subscribing;
            for (;;) {
              const entry = inbox.shift();
              if (entry) {
                entry.taken();
                if ("lost" in entry.item) {
                  await finish();
                  throw new ContinuityBroken(name, entry.item.lost);
                }
                return { done: false, value: entry.item.change };
              }
              if (finished || client._closed) return finish();
              await new Promise((resolve) => {
                arrived = () => {
                  arrived = null;
                  resolve(undefined);
                };
                client._closeWaiters.add(arrived);
              });
              if (arrived) client._closeWaiters.delete(arrived);
            }
          },
          return: finish,
        };
      },
    };
  }

  /**
   * Close: stop every subscription and the connection; the state becomes `signed_out`.
   * Idempotent.
   * @returns {Promise<void>}
   */
  async close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._reconnectTimer);
    clearInterval(this._ticker);
    for (const remove of this._unlisten.splice(0)) remove();
    this._flushCursors();
    for (const conn of [this._conn, ...this._retiring]) conn?.close();
    this._api?.close();
    this._credentials.close();
    for (const channel of this._channels.values()) this._stopChannel(channel);
    this._channels.clear();
    this._setState("signed_out");
    this._wake?.();
    for (const waiter of [...this._closeWaiters]) waiter();
    this._closeWaiters.clear();
  }

  /** @private @type {Set<() => void>} */
  _closeWaiters = new Set();

  // ------------------------------------------------------------------ start and stop

  /** @private */
  async _start() {
    const timeoutMs = this._o.connectTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ConnectTimeout(
              `signing in did not finish within ${timeoutMs} ms; connectTimeoutMs in the ` +
                "options sets how long to wait",
            ),
          ),
        timeoutMs,
      );
    });
    /** @type {import("./session.js").Session} */
    let session;
    try {
      session = await Promise.race([this._credentials.getSession(), late]);
    } finally {
      clearTimeout(timer);
    }
    this._api = new ChannelsApi({
      fetch: this._fetch,
      credentials: this._credentials,
      region: session.region,
      apiUrl: session.apiUrl,
    });
    this._listenToTheBrowser();
    this._ticker = setInterval(() => this._handle(() => this._onTick()), TICK_MS);
    void this._openPush();
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      this._wake = () => {
        if (this._upOnce || this._fatal || this._closed) {
          clearTimeout(timer);
          resolve(undefined);
        }
      };
      this._wake();
    });
    this._wake = null;
    if (this._upOnce) return;
    if (this._fatal) throw this._fatal;
    if (this._closed) throw new ClientClosed("the client was closed while connecting");
    const last = this._lastFailure ? ` (last attempt: ${this._lastFailure})` : "";
    throw new ConnectTimeout(
      `no push connection and no working poll within ${timeoutMs} ms${last}; ` +
        "connectTimeoutMs in the options sets how long to wait",
    );
  }

  /** @private */
  _listenToTheBrowser() {
    const target = /** @type {any} */ (globalThis);
    if (typeof target.addEventListener !== "function") return;
    /** @param {string} type @param {() => void} handler */
    const listen = (type, handler) => {
      const wrapped = () => this._handle(handler);
      const on = type === "visibilitychange" ? target.document : target;
      if (!on?.addEventListener) return;
      on.addEventListener(type, wrapped);
      this._unlisten.push(() => on.removeEventListener(type, wrapped));
    };
    listen("online", () => this._checkNow("the browser is online again"));
    listen("offline", () => this._checkConnection());
    listen("visibilitychange", () => {
      if (target.document?.visibilityState === "visible") {
        this._checkNow("the page is visible again");
      } else {
        this._flushCursors();
      }
    });
    listen("pagehide", () => this._flushCursors());
  }

  /**
   * The page came back (visible, online): a socket that died meanwhile is replaced now, not
   * after the backoff timer (which a background tab's browser throttles), and every channel
   * reads what it missed.
   * @private @param {string} why
   */
  _checkNow(why) {
    if (this._link === "signed_out") return;
    if (this._conn?.up) {
      this._checkConnection();
      return;
    }
    this._failures = 0;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    this._lastFailure = why;
    void this._openPush();
    for (const channel of this._channels.values()) {
      if (channel.ready && channel.retryTimer !== undefined) {
        clearTimeout(channel.retryTimer);
        channel.retryTimer = undefined;
        this._run(channel, channel.order.resume());
      }
    }
  }

  /** Ping the server; a socket that does not answer is given up. @private */
  _checkConnection() {
    const conn = this._conn;
    if (!conn?.up) return;
    void conn.ping(PING_TIMEOUT_MS).then((answered) => {
      if (!answered) conn.drop("the server did not answer a ping");
    });
  }

  // ------------------------------------------------------------------ events

  /**
   * Run `handler` as one event, then say the new state.
   * @private @param {() => void} handler
   */
  _handle(handler) {
    if (this._closed) return;
    try {
      handler();
    } catch (error) {
      reportError(error);
    }
    this._afterEvent();
  }

  /** @private */
  _afterEvent() {
    if (this._closed) return;
    let catchingUp = false;
    for (const channel of this._channels.values()) catchingUp ||= channel.catchingUp;
    /** @type {ConnectionState} */
    let state;
    const link = this._link;
    if (link === "signed_out") state = "signed_out";
    else if (link === "push") state = catchingUp ? "catching_up" : "live";
    else if (link === "poll") state = this._pollOk ? "polling" : "offline";
    else if (link === "connecting") state = "connecting";
    else state = "offline";
    this._setState(state);
    if (state === "live" || state === "catching_up" || state === "polling") {
      this._upOnce = true;
    }
    this._wake?.();
  }

  /** @private @param {ConnectionState} state */
  _setState(state) {
    if (state === this._state) return;
    this._state = state;
    for (const listener of [...this._stateListeners]) {
      try {
        listener(state);
      } catch (error) {
        reportError(error);
      }
    }
  }

  /** @private @param {TidingsError} error */
  _setFatal(error) {
    this._fatal ??= error;
    this._wake?.();
  }

  // ------------------------------------------------------------------ subscriptions

  /** @private @param {string} channel */
  _expand(channel) {
    const parts = String(channel).replace(/^\/+|\/+$/g, "").split("/");
    if (parts.length >= 2 && parts[0] === "users" && parts[1] === "me") {
      parts[1] = this.identityId;
    }
    return parts.join("/");
  }

  /**
   * Refuse a channel name the API would refuse, before any request (a browser would also
   * resolve `.` and `..` in the URL and read another channel than the one named).
   * @private @param {string} given @param {string} name
   */
  _checkChannel(given, name) {
    const segments = name.split("/");
    const bad = segments.find((segment) => !CHANNEL_SEGMENT.test(segment));
    if (!name || bad !== undefined) {
      const why = name ? `the segment ${JSON.stringify(bad)} is not allowed` : "it is empty";
      const named = given === name ? JSON.stringify(given) : `${JSON.stringify(given)} (${name})`;
      throw new BadRequest(
        `${named} is not a channel name: ${why}; segments are 1-128 of ` +
          "letters, digits and _.:@=-, not dots alone (e.g. users/me/todos)",
      );
    }
  }

  /** @private @param {string} name */
  _storageKey(name) {
    return `tidings:${this.identityId}:${name}`;
  }

  /**
   * @private
   * @param {string} name
   * @param {(item: Item) => unknown} sink
   * @param {number | undefined} after
   * @returns {Promise<ChannelState>}
   */
  async _subscribe(name, sink, after) {
    if (this._closed) throw new ClientClosed("the client is closed");
    if (this._channels.has(name)) {
      throw new TidingsError(`already subscribed to ${name}; close that subscription first`);
    }
    if (after !== undefined && (!Number.isInteger(after) || after < 0)) {
      throw new TypeError(`after must be a seq (an integer ≥ 0), not ${after}`);
    }
    const api = /** @type {ChannelsApi} */ (this._api);
    /** @type {{ cursor: number, epoch: number } | null} */
    let saved = null;
    if (after === undefined && this._o.storage) {
      try {
        const text = this._o.storage.getItem(this._storageKey(name));
        const parsed = text ? JSON.parse(text) : null;
        if (Number.isInteger(parsed?.cursor) && Number.isInteger(parsed?.epoch)) saved = parsed;
      } catch {
        saved = null; // a damaged entry: start from the head
      }
    }
    const topic = /** @type {import("./session.js").Session} */ (this._credentials.session)
      .topicPrefix + name;
    /** @type {ChannelState} */
    const state = {
      name,
      topic,
      order: new ChannelOrder(name),
      delivery: new Delivery(sink),
      ready: false,
      early: [],
      closed: false,
      cursor: 0,
      epoch: null,
      fillFailures: 0,
      head: 0,
      readAhead: new Map(),
      longPollAt: 0,
      held: false,
      catchingUp: false,
      longPolling: false,
      retryTimer: undefined,
      gapTimer: undefined,
    };
    state.delivery.sink = (item) => {
      if ("change" in item) {
        state.cursor = item.change.seq;
        state.epoch = item.change.epoch;
        this._cursorMoved();
      }
      return sink(item);
    };
    this._channels.set(name, state); // pushes from now on are kept in `early`
    let head;
    try {
      const conn = this._conn;
      if (this._link === "push" && conn?.up) {
        try {
          await conn.subscribe(topic); // a refusal surfaces as AWS IoT's SUBACK
        } catch (error) {
          if (error instanceof AccessDenied) {
            // AWS IoT does not say why; the API does when the channel does not exist
            await api.head(name).catch((why) => {
              if (why instanceof BadRequest) throw why;
            });
            throw error;
          }
          // the connection went while subscribing: the reconnect subscribes again
        }
      }
      head = await api.head(name); // the API's own refusal (403) when push is not up
    } catch (error) {
      this._unsubscribe(state);
      throw error;
    }
    if (state.closed) throw new ClientClosed("the subscription was closed while it started");
    const start = after ?? saved?.cursor ?? head.head;
    const epoch = saved && after === undefined ? saved.epoch : head.epoch;
    state.cursor = start;
    state.epoch = epoch;
    state.catchingUp = start < head.head;
    state.head = head.head;
    this._handle(() => this._onReady(state, start, epoch));
    return state;
  }

  /** @internal @param {ChannelState | null} state */
  _unsubscribe(state) {
    if (!state || state.closed) return;
    this._stopChannel(state);
    if (this._channels.get(state.name) === state) this._channels.delete(state.name);
    const conn = this._conn;
    if (conn?.up && !this._closed) conn.unsubscribe(state.topic).catch(() => {});
    this._flushCursors();
    this._afterEvent();
  }

  /** @private @param {ChannelState} state */
  _stopChannel(state) {
    state.closed = true;
    state.readAhead.clear();
    state.delivery.stopped = true;
    clearTimeout(state.retryTimer);
    clearTimeout(state.gapTimer);
  }

  /** @private */
  _cursorMoved() {
    if (this._o.storage && this._flushTimer === undefined) {
      this._flushTimer = setTimeout(() => this._flushCursors(), 250);
    }
  }

  /** Keep every channel's cursor in `storage` now. @private */
  _flushCursors() {
    clearTimeout(this._flushTimer);
    this._flushTimer = undefined;
    const storage = this._o.storage;
    if (!storage) return;
    for (const channel of this._channels.values()) {
      if (channel.epoch === null) continue;
      try {
        const value = JSON.stringify({ cursor: channel.cursor, epoch: channel.epoch });
        storage.setItem(this._storageKey(channel.name), value);
      } catch {
        // a full or disabled storage: the page starts from the head next time
      }
    }
  }

  // ------------------------------------------------------------------ channels

  /** @private @param {ChannelState} channel @param {Item} item */
  _handOver(channel, item) {
    const backlog = channel.delivery.put(item);
    const limit = this._o.maxBufferedChanges;
    if (backlog >= limit && !channel.held) {
      channel.held = true;
      this._stats.holds += 1;
      channel.delivery.whenBelow = {
        below: Math.floor(limit / 2),
        then: () =>
          this._handle(() => {
            if (channel.closed) return;
            channel.held = false;
            channel.catchingUp = true;
            if (channel.ready) this._run(channel, channel.order.resume());
          }),
      };
    }
  }

  /** @private @param {ChannelState} channel @param {readonly Action[]} actions */
  _run(channel, actions) {
    for (const action of actions) {
      if (channel.closed) return;
      if (action.type === "deliver") {
        this._handOver(channel, { change: /** @type {Change} */ (/** @type {unknown} */ (action.change)) });
      } else if (action.type === "fill") {
        if (channel.held) channel.order.onFillFailed();
        else this._startFill(channel, action.after);
      } else if (action.type === "awaitGap") {
        if (this._o.reorderWindowMs <= 0) {
          this._run(channel, channel.order.gapTimeout());
        } else {
          channel.gapTimer = setTimeout(
            () => this._handle(() => !channel.closed && this._run(channel, channel.order.gapTimeout())),
            this._o.reorderWindowMs,
          );
        }
      } else {
        channel.catchingUp = false;
        this._handOver(channel, { lost: { head: action.head, epoch: action.epoch, reason: action.reason } });
      }
    }
  }

  /** @private @param {MqttConnection} _conn @param {string} topic @param {Uint8Array} payload */
  _onMessage(_conn, topic, payload) {
    const prefix = /** @type {import("./session.js").Session} */ (this._credentials.session)
      .topicPrefix;
    if (!topic.startsWith(prefix)) return;
    const channel = this._channels.get(topic.slice(prefix.length));
    if (!channel || channel.closed) return;
    /** @type {Envelope} */
    let change;
    try {
      change = JSON.parse(UTF8.decode(payload));
      if (!Number.isInteger(change.seq)) throw new TypeError("no seq");
    } catch {
      console.warn(`tidings: ignoring a malformed message on ${topic}`);
      return;
    }
    this._stats.pushed += 1;
    if (channel.held) return; // the change log keeps it: read once the consumer caught up
    if (!channel.ready) {
      channel.early.push(change);
      return;
    }
    const before = channel.order.cursor;
    const actions = channel.order.onPush(change);
    if (actions.length === 0 && channel.order.cursor === before) this._stats.duplicates += 1;
    this._run(channel, actions);
  }

  /** @private @param {ChannelState} channel @param {number} start @param {number} epoch */
  _onReady(channel, start, epoch) {
    if (channel.closed) return;
    channel.order.cursor = start;
    channel.order.epoch = epoch;
    channel.ready = true;
    for (const change of channel.early.splice(0)) this._run(channel, channel.order.onPush(change));
    this._run(channel, channel.order.resume());
  }

  /** @private @param {ChannelState} channel @param {number} after */
  _startFill(channel, after) {
    const api = /** @type {ChannelsApi} */ (this._api);
    const polling = this._link === "poll";
    const waitS = polling && Date.now() >= channel.longPollAt ? this._o.pollWaitS : 0;
    if (polling) this._stats.polls += 1;
    channel.longPolling = waitS > 0;
    const epoch = channel.order.epoch;
    const early = channel.readAhead.get(after);
    channel.readAhead.delete(after);
    let page = waitS === 0 && early?.epoch === epoch ? early.page : undefined;
    page ??= api.changes(channel.name, after, { limit: this._o.fillLimit, waitS, epoch });
    if (waitS === 0) this._readAhead(channel, after, epoch);
    page.then(
      (answer) => this._handle(() => this._onFill(channel, answer)),
      (error) => this._handle(() => this._onFill(channel, error)),
    );
  }

  /**
   * A channel far behind its head reads the next pages while it waits for this one: the log is
   * dense (seq after seq), so where each page starts is known. At most `READ_AHEAD_PAGES` are
   * out; a page read ahead is used when the ordering asks for exactly its `after`, else
   * dropped (and a failed one is simply asked for again).
   * @private @param {ChannelState} channel @param {number} after @param {number | null} epoch
   */
  _readAhead(channel, after, epoch) {
    const api = /** @type {ChannelsApi} */ (this._api);
    const limit = this._o.fillLimit;
    for (const [start, early] of channel.readAhead) {
      const outside = start <= after || start > after + READ_AHEAD_PAGES * limit;
      if (outside || early.epoch !== epoch) channel.readAhead.delete(start);
    }
    for (let n = 1; n <= READ_AHEAD_PAGES; n += 1) {
      const start = after + n * limit;
      if (start >= channel.head) return;
      if (!channel.readAhead.has(start)) {
        const page = api.changes(channel.name, start, { limit, waitS: 0, epoch });
        page.catch(() => {}); // used, or dropped, later
        channel.readAhead.set(start, { epoch, page });
      }
    }
  }

  /** @private @param {number} failures */
  _backoffMs(failures) {
    const doubled = this._o.minBackoffMs * 2 ** Math.min(failures, 10);
    return Math.min(this._o.maxBackoffMs, doubled) * (0.5 + Math.random() / 2);
  }

  /**
   * @private
   * @param {ChannelState} channel
   * @param {import("./api.js").ChangesPage | unknown} result
   */
  _onFill(channel, result) {
    channel.longPolling = false;
    if (channel.closed) return;
    const order = channel.order;
    if (result instanceof CursorExpired) {
      channel.fillFailures = 0;
      this._run(channel, order.onCursorExpired(result.head, result.epoch));
    } else if (result instanceof Error) {
      order.onFillFailed();
      if (result instanceof SignInFailed && !(result instanceof RateLimited)) {
        this._signOut(result);
        return;
      }
      if (result instanceof AccessDenied) {
        this._run(channel, [{ type: "lost", head: order.cursor, epoch: order.epoch ?? 0, reason: /** @type {any} */ ("access_denied") }]);
        return;
      }
      if (result instanceof ServiceUnavailable && result.retryAfter !== null) {
        if (result.code === "too_many_waits") {
          channel.longPollAt = Date.now() + result.retryAfter * 1000;
          this._run(channel, order.resume());
        } else {
          this._retryLater(channel, result.retryAfter * 1000);
        }
        return;
      }
      if (this._link === "poll") this._pollOk = false;
      channel.fillFailures += 1;
      this._retryLater(channel, this._backoffMs(channel.fillFailures));
      return;
    } else {
      const page = /** @type {import("./api.js").ChangesPage} */ (result);
      channel.fillFailures = 0;
      if (this._link === "poll") this._pollOk = true;
      const changes = page.changes ?? [];
      channel.head = Math.max(channel.head, Number(page.head));
      this._stats.filled += changes.length;
      this._run(channel, order.onFill(changes, Number(page.head), Number(page.epoch), Boolean(page.more)));
    }
    if (!order.filling) channel.catchingUp = false;
    if (this._link === "poll" && !order.filling) {
      const holdMs = channel.longPollAt - Date.now();
      if (holdMs > 0) this._retryLater(channel, holdMs);
      else this._run(channel, order.resume());
    }
  }

  /** @private @param {ChannelState} channel @param {number} delayMs */
  _retryLater(channel, delayMs) {
    clearTimeout(channel.retryTimer);
    channel.retryTimer = setTimeout(() => {
      channel.retryTimer = undefined;
      this._handle(() => {
        if (!channel.closed && channel.ready) this._run(channel, channel.order.resume());
      });
    }, delayMs);
  }

  // ------------------------------------------------------------------ the push connection

  /** Open a push connection with fresh credentials and a new presigned URL. @private */
  async _openPush() {
    if (this._opening || this._closed || this._link === "signed_out") return;
    this._opening = true;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    /** @type {MqttConnection} */
    let conn;
    try {
      const credentials = await this._credentials.get();
      const session = /** @type {import("./session.js").Session} */ (this._credentials.session);
      const port = session.iotPort === 443 ? "" : `:${session.iotPort}`;
      const url = await presignUrl({
        url: `wss://${session.iotEndpoint}${port}/mqtt`,
        region: session.region,
        service: "iotdevicegateway",
        credentials,
        tokenAfterSigning: true,
      });
      conn = new MqttConnection({
        url,
        clientId: `${session.identityId}-${randomHex(12)}`,
        keepAliveS: this._o.keepAliveS,
        connectTimeoutMs: Math.min(this._o.connectTimeoutMs, 10_000),
        WebSocket: this._WebSocket,
        events: {
          message: (topic, payload) => this._handle(() => this._onMessage(conn, topic, payload)),
          closed: (reason) => this._handle(() => this._onClosed(conn, reason)),
        },
      });
      await conn.open();
    } catch (error) {
      this._opening = false;
      this._handle(() => this._onConnectFailed(error));
      return;
    }
    this._opening = false;
    if (this._closed || /** @type {string} */ (this._link) === "signed_out") {
      conn.close();
      return;
    }
    const previous = this._conn;
    this._conn = conn;
    if (previous && previous !== conn) this._retiring.push(previous);
    this._handle(() => this._onConnected(conn));
  }

  /** @private @param {MqttConnection} conn */
  _onConnected(conn) {
    this._failures = 0;
    this._downSince = null;
    if (this._upOnce && this._link !== "push") this._stats.reconnects += 1;
    this._link = "push";
    this._connectedAt = Date.now();
    const channels = [...this._channels.values()];
    for (const channel of channels) channel.catchingUp ||= channel.ready;
    void Promise.all(
      channels.map((channel) =>
        conn.subscribe(channel.topic).catch((error) => {
          if (error instanceof AccessDenied) {
            this._handle(() => {
              if (channel.closed) return;
              const order = channel.order;
              this._run(channel, [{ type: "lost", head: order.cursor, epoch: order.epoch ?? 0, reason: /** @type {any} */ ("access_denied") }]);
            });
          }
        }),
      ),
    ).then(() =>
      this._handle(() => {
        for (const old of this._retiring.splice(0)) old.close();
        for (const channel of channels) {
          if (channel.ready && !channel.closed) {
            // a long-poll still out answers as soon as anything is there: not behind
            channel.catchingUp = !channel.longPolling;
            this._run(channel, channel.order.resume());
          }
        }
      }),
    );
  }

  /** @private @param {MqttConnection} conn @param {string} reason */
  _onClosed(conn, reason) {
    if (conn !== this._conn) return; // a retired connection
    this._lastFailure = reason;
    if (this._link === "push") {
      this._link = "down";
      this._downSince = Date.now();
    }
    this._scheduleReconnect();
  }

  /** @private @param {unknown} error */
  _onConnectFailed(error) {
    if (this._link === "signed_out") return;
    this._failures += 1;
    this._lastFailure = error instanceof Error ? error.message : String(error);
    this._downSince ??= Date.now();
    const refused = this._credentials.refused;
    if (refused) {
      this._signOut(refused);
      return;
    }
    if (error instanceof AccessDenied && !this._upOnce) {
      this._setFatal(error);
    }
    this._scheduleReconnect();
  }

  /** @private */
  _scheduleReconnect() {
    if (this._reconnectTimer !== undefined || this._opening || this._closed) return;
    if (this._link === "signed_out") return;
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = undefined;
      void this._openPush();
    }, this._backoffMs(this._failures));
  }

  /** Signing in again was refused: stop connecting and polling; say so. @private @param {SignInFailed} error */
  _signOut(error) {
    if (this._link === "signed_out") return;
    console.warn(`tidings: signed out: ${error.message}`);
    this._link = "signed_out";
    clearTimeout(this._reconnectTimer);
    this._conn?.close();
    this._setFatal(error);
  }

  /** @private */
  _onTick() {
    const now = Date.now();
    const link = this._link;
    if (
      (link === "connecting" || link === "down") &&
      this._downSince !== null &&
      (now - this._downSince >= this._o.fallbackAfterMs || this._failures >= this._o.fallbackAfterFailures)
    ) {
      console.warn("tidings: no push connection; falling back to polling");
      this._link = "poll";
      this._pollOk = false;
      let resumed = false;
      for (const channel of this._channels.values()) {
        if (channel.ready) {
          resumed = true;
          this._run(channel, channel.order.resume());
        }
      }
      if (!resumed) this._probe();
    }
    if (link === "push" && this._retiring.length === 0 && now - this._connectedAt >= this._o.maxConnectionAgeMs) {
      this._connectedAt = now;
      this._stats.renewals += 1;
      void this._openPush(); // the new connection takes over; the old one closes after
    }
  }

  /** In poll mode with nothing to poll: check that the API answers. @private */
  _probe() {
    if (this._probing) return;
    const channels = this._credentials.session?.channels ?? [];
    if (channels.length === 0) {
      this._pollOk = true;
      return;
    }
    this._probing = true;
    const api = /** @type {ChannelsApi} */ (this._api);
    api.head(this._expand(channels[0])).then(
      () => this._handle(() => this._onProbe(null)),
      (error) => this._handle(() => this._onProbe(error)),
    );
  }

  /** @private @param {unknown} error */
  _onProbe(error) {
    this._probing = false;
    if (this._link !== "poll") return;
    if (error === null) {
      this._pollOk = true;
      return;
    }
    this._lastFailure = String(error);
    if (error instanceof SignInFailed && !(error instanceof RateLimited)) {
      this._signOut(error);
      return;
    }
    this._failures += 1;
    setTimeout(
      () => this._handle(() => this._link === "poll" && !this._pollOk && this._probe()),
      this._backoffMs(this._failures),
    );
  }
}
