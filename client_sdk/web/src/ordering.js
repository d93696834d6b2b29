/**
 * Per-channel ordering, dedupe and gap detection: pure logic, no I/O.
 *
 * The JavaScript port of the Python client's `client_sdk/_ordering.py`; both run the same
 * conformance scenarios (tests/conformance/ordering.json), so keep them in step.
 *
 * Each channel's changes carry `seq` (contiguous from 1 within an `epoch`). Pushed changes
 * can arrive twice (QoS 1 redelivery, overlap with a catch-up), out of order, or with holes (a
 * connection drop). {@link ChannelOrder} turns whatever arrives into what the application may
 * see — each change once, in `seq` order — and tells its owner when to fetch the missing range
 * from the API and when continuity was lost (cursor expired, epoch changed).
 *
 * A hole opened by a push is usually a reordering, not a loss: the publisher keeps several
 * publishes of a channel in flight and AWS IoT does not order them. So a push-side gap first
 * asks its owner to wait (an `awaitGap` action); if the missing changes have not arrived when
 * the owner calls {@link ChannelOrder#gapTimeout}, that asks for the fill.
 *
 * Only standard JavaScript: it runs unchanged in browsers, Node and React Native.
 *
 * @module
 */

/**
 * A change as the API and the push transport deliver it: `seq` and `epoch`, `ref: true` for a
 * push that only references a change too large for MQTT, and any other fields.
 *
 * @typedef {{ readonly seq: number, readonly epoch?: number, readonly ref?: boolean,
 *             readonly [field: string]: unknown }} Envelope
 */

/**
 * Hand this change to the application.
 * @typedef {{ readonly type: "deliver", readonly change: Envelope }} Deliver
 */

/**
 * Fetch the changes after `after` from the API (a gap, a reference, or a resume).
 * @typedef {{ readonly type: "fill", readonly after: number }} Fill
 */

/**
 * A push left a hole after `after`: call `gapTimeout()` after the reorder window.
 * @typedef {{ readonly type: "awaitGap", readonly after: number }} AwaitGap
 */

/**
 * Why continuity was lost.
 * @typedef {"cursor_expired" | "epoch_changed" | "gap_in_log"} LostReason
 */

/**
 * Continuity was lost: changes between the cursor and `head` cannot be delivered.
 * @typedef {{ readonly type: "lost", readonly head: number, readonly epoch: number,
 *             readonly reason: LostReason }} Lost
 */

/** @typedef {Deliver | Fill | AwaitGap | Lost} Action */

/**
 * Where a channel's ordering starts: `cursor` the last `seq` already seen (0 for a new
 * subscription), `epoch` null until a change or a fill tells it.
 *
 * @typedef {{ cursor?: number, epoch?: number | null, maxBuffer?: number }} ChannelOrderOptions
 */

/** @param {Envelope} change @returns {Deliver} */
const deliver = (change) => Object.freeze({ type: "deliver", change });
/** @param {number} after @returns {Fill} */
const fill = (after) => Object.freeze({ type: "fill", after });
/** @param {number} after @returns {AwaitGap} */
const awaitGap = (after) => Object.freeze({ type: "awaitGap", after });
/** @param {number} head @param {number} epoch @param {LostReason} reason @returns {Lost} */
const lost = (head, epoch, reason) => Object.freeze({ type: "lost", head, epoch, reason });

/**
 * Ordering state of one channel.
 *
 * `cursor` is the last `seq` delivered (0 before the first); `epoch` is null until the first
 * change or head tells it. Methods return the actions to carry out, in order.
 */
export class ChannelOrder {
  /**
   * The channel's name.
   * @readonly
   * @type {string}
   */
  channel;
  /**
   * The last `seq` delivered (0 before the first).
   * @type {number}
   */
  cursor;
  /**
   * The channel's epoch, null until a change or a fill tells it.
   * @type {number | null}
   */
  epoch;
  /**
   * The reorder buffer's size limit.
   * @type {number}
   */
  maxBuffer;
  /**
   * Changes that arrived ahead of the cursor, by `seq`.
   * @private
   * @type {Map<number, Envelope>}
   */
  _buffer = new Map();
  /**
   * Whether a fill is outstanding.
   * @private
   */
  _filling = false;
  /**
   * The epoch when the outstanding fill was asked for.
   * @private
   * @type {number | null}
   */
  _fillEpoch = null;
  /**
   * Whether an `awaitGap` window is running.
   * @private
   */
  _awaitingGap = false;

  /**
   * @param {string} channel
   * @param {ChannelOrderOptions} [options]
   */
  constructor(channel, options = {}) {
    const { cursor = 0, epoch = null, maxBuffer = 10_000 } = options;
    this.channel = channel;
    this.cursor = cursor;
    this.epoch = epoch;
    this.maxBuffer = maxBuffer;
  }

  /** True while a fill is outstanding. */
  get filling() {
    return this._filling;
  }

  /**
   * A change arrived over the push transport.
   * @param {Envelope} change
   * @returns {Action[]}
   */
  onPush(change) {
    const seq = Number(change.seq);
    const epoch = Number(change.epoch ?? 0);
    /** @type {Action[]} */
    const actions = [];
    if (this.epoch === null) {
      this.epoch = epoch;
    } else if (epoch !== this.epoch) {
      if (epoch < this.epoch) {
        return []; // a stale message from before the reset
      }
      actions.push(lost(seq, epoch, "epoch_changed"));
      this.epoch = epoch;
      this.cursor = 0;
      this._buffer.clear();
    }
    if (seq <= this.cursor || this._buffer.has(seq)) {
      return actions;
    }
    if (change.ref) {
      this._buffer.set(seq, change);
      return [...actions, ...this._requestFill()];
    }
    if (seq === this.cursor + 1 && this._buffer.size === 0) {
      this.cursor = seq;
      return [...actions, deliver(change)];
    }
    if (this._buffer.size >= this.maxBuffer) {
      this._buffer.clear();
    }
    this._buffer.set(seq, change);
    actions.push(...this._drain());
    if (this._buffer.size > 0 && !this._filling && !this._awaitingGap) {
      this._awaitingGap = true;
      actions.push(awaitGap(this.cursor));
    }
    return actions;
  }

  /**
   * The reorder window after an `awaitGap` is over: fill what is still missing.
   * @returns {Action[]}
   */
  gapTimeout() {
    this._awaitingGap = false;
    if (this._buffer.size > 0) {
      return this._requestFill();
    }
    return [];
  }

  /**
   * After a (re)connect or a poll tick: fetch whatever came after the cursor.
   * @returns {Action[]}
   */
  resume() {
    return this._requestFill();
  }

  /**
   * The API answered a fill with `changes` (ordered), the channel's head and epoch.
   * @param {readonly Envelope[]} changes
   * @param {number} head
   * @param {number} epoch
   * @param {boolean} more
   * @returns {Action[]}
   */
  onFill(changes, head, epoch, more) {
    this._filling = false;
    if (this._staleAnswer(epoch)) {
      return this._buffer.size > 0 ? this._requestFill() : [];
    }
    /** @type {Action[]} */
    const actions = [];
    if (this.epoch !== null && epoch !== this.epoch) {
      actions.push(lost(head, epoch, "epoch_changed"));
      this.cursor = 0;
      this._buffer.clear();
    }
    this.epoch = epoch;
    for (const change of changes) {
      if (Number(change.epoch ?? epoch) !== epoch) {
        continue;
      }
      const seq = Number(change.seq);
      if (seq <= this.cursor) {
        continue;
      }
      if (seq !== this.cursor + 1) {
        // the log itself has a hole: it can only be retention or a reset
        actions.push(lost(seq - 1, epoch, "gap_in_log"));
      }
      this.cursor = seq;
      this._buffer.delete(seq);
      actions.push(deliver(change));
    }
    actions.push(...this._drain());
    if (more || this._needsFill(head)) {
      actions.push(...this._requestFill());
    }
    return actions;
  }

  /**
   * The API says the cursor is older than the retention (or from another epoch).
   * @param {number} head
   * @param {number} epoch
   * @returns {Action[]}
   */
  onCursorExpired(head, epoch) {
    this._filling = false;
    if (this._staleAnswer(epoch)) {
      return this._buffer.size > 0 ? this._requestFill() : [];
    }
    /** @type {Action[]} */
    const actions = [lost(head, epoch, "cursor_expired")];
    if (this.epoch !== null && epoch !== this.epoch) {
      this._buffer.clear(); // what waits there belongs to the old epoch
    }
    this.cursor = head;
    this.epoch = epoch;
    for (const seq of [...this._buffer.keys()]) {
      if (seq <= this.cursor) {
        this._buffer.delete(seq);
      }
    }
    actions.push(...this._drain());
    if (this._buffer.size > 0) {
      actions.push(...this._requestFill());
    }
    return actions;
  }

  /** A fill did not complete; the next push or resume asks again. */
  onFillFailed() {
    this._filling = false;
  }

  // ------------------------------------------------------------------ internals

  /**
   * Whether a fill's answer comes from before the channel's epoch changed: its changes (or its
   * 410) speak of a cursor that no longer exists, so it is dropped.
   * @private
   * @param {number} epoch
   * @returns {boolean}
   */
  _staleAnswer(epoch) {
    if (this.epoch === null) {
      return false;
    }
    const askedInAnotherEpoch = this._fillEpoch !== null && this._fillEpoch !== this.epoch;
    return epoch < this.epoch || askedInAnotherEpoch;
  }

  /** @private @param {number} head @returns {boolean} */
  _needsFill(head) {
    return head > this.cursor || this._buffer.size > 0;
  }

  /** @private @returns {Action[]} */
  _requestFill() {
    if (this._filling) {
      return [];
    }
    this._filling = true;
    this._fillEpoch = this.epoch;
    return [fill(this.cursor)];
  }

  /** @private @returns {Action[]} */
  _drain() {
    /** @type {Action[]} */
    const actions = [];
    for (;;) {
      const next = this._buffer.get(this.cursor + 1);
      if (next === undefined || next.ref) {
        return actions;
      }
      this._buffer.delete(this.cursor + 1);
      this.cursor += 1;
      actions.push(deliver(next));
    }
  }
}
