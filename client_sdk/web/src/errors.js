/**
 * The errors the client raises, the same family as the Python client's (`client_sdk/_errors.py`).
 *
 * Every one is a {@link TidingsError}; `name` is the class name, so `err.name === "AccessDenied"`
 * works across bundles and realms where `instanceof` may not.
 *
 * @module
 */

/** The base of every error the client raises. */
export class TidingsError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** Signing in was refused (wrong password, unknown user, token refused): sign in anew. */
export class SignInFailed extends TidingsError {}

/** Too many sign-ins or requests; try again after `retryAfter` seconds. */
export class RateLimited extends SignInFailed {
  /** @param {string} message @param {number} retryAfter seconds */
  constructor(message, retryAfter) {
    super(message);
    /** Seconds to wait before trying again. */
    this.retryAfter = retryAfter;
  }
}

/** The identity may not read the channel (or connect): the API's 403, AWS IoT's SUBACK 0x87. */
export class AccessDenied extends TidingsError {}

/** A request the API refused as malformed (400) or for an unknown channel (404). */
export class BadRequest extends TidingsError {}

/** The service cannot be reached or answered an error; the client retries by itself. */
export class ServiceUnavailable extends TidingsError {
  /**
   * @param {string} message
   * @param {number | null} [retryAfter] seconds, from `Retry-After`
   * @param {string} [code] the API's `error` field (e.g. `too_many_waits`)
   */
  constructor(message, retryAfter = null, code = "") {
    super(message);
    /** Seconds the service asked to wait, or null. */
    this.retryAfter = retryAfter;
    /** The API's error code, or "". */
    this.code = code;
  }
}

/** `connect()` found neither a push connection nor a working poll within `connectTimeoutMs`. */
export class ConnectTimeout extends ServiceUnavailable {}

/** The client was closed. */
export class ClientClosed extends TidingsError {}

/** The cursor is older than the channel's retention (or from another epoch): the API's 410. */
export class CursorExpired extends TidingsError {
  /** @param {string} message @param {number} head @param {number} epoch */
  constructor(message, head, epoch) {
    super(message);
    /** The channel's head now. */
    this.head = head;
    /** The channel's epoch now. */
    this.epoch = epoch;
  }
}

/**
 * Raised by `for await (… of t.changes(channel))` when continuity is lost: the changes between
 * the cursor and `head` cannot be delivered. Catch it, reload the channel's state, and iterate
 * again from `head`.
 */
export class ContinuityBroken extends TidingsError {
  /**
   * @param {string} channel
   * @param {{ head: number, epoch: number, reason: string }} lost
   */
  constructor(channel, lost) {
    super(`continuity lost on ${channel}: ${lost.reason} (head ${lost.head}, epoch ${lost.epoch})`);
    this.channel = channel;
    this.head = lost.head;
    this.epoch = lost.epoch;
    this.reason = lost.reason;
  }
}
