/**
 * Signing in and keeping temporary AWS credentials fresh, as the Python client does
 * (`client_sdk/_session.py`).
 *
 * `POST /v1/login` answers an OpenID token for the user's Cognito identity; Cognito's
 * `GetCredentialsForIdentity` (a plain, unsigned JSON call) exchanges it for temporary AWS
 * credentials. {@link CredentialSource} renews them ahead of expiry and signs in again when the
 * token itself runs out, so every connection and every API call signs with valid credentials.
 *
 * @module
 */

import {
  BadRequest,
  ConnectTimeout,
  RateLimited,
  ServiceUnavailable,
  SignInFailed,
} from "./errors.js";

/**
 * How to sign in: a Tidings user's name and password, a Cognito user pool / OpenID Connect ID
 * token (or a function returning a current one), or a registered device and its secret.
 *
 * @typedef {{ method: "password", username: string, password: string }
 *   | { method: "id_token", idToken: string | (() => string | Promise<string>) }
 *   | { method: "device", thingName: string, secret: string }} SignIn
 */

/**
 * What `/v1/login` answered.
 * @typedef {{ identityId: string, token: string, expiresAt: number, region: string,
 *   iotEndpoint: string, iotPort: number, topicPrefix: string, apiUrl: string,
 *   channels: string[] }} Session
 */

/**
 * Temporary AWS credentials; `expiration` in ms since the epoch.
 * @typedef {{ accessKeyId: string, secretAccessKey: string, sessionToken: string,
 *   expiration: number }} Credentials
 */

/** @typedef {typeof globalThis.fetch} Fetch */

/**
 * The JSON body of `POST /v1/login` for `signIn`.
 * @param {SignIn} signIn
 * @returns {Promise<Record<string, string>>}
 */
export async function loginBody(signIn) {
  const text = (/** @type {unknown} */ value, /** @type {string} */ name) => {
    if (typeof value !== "string" || !value) {
      throw new TypeError(`sign-in: ${name} must be a non-empty string`);
    }
    return value;
  };
  switch (signIn?.method) {
    case "password":
      return {
        method: "password",
        username: text(signIn.username, "username"),
        password: text(signIn.password, "password"),
      };
    case "id_token": {
      const token = typeof signIn.idToken === "function" ? await signIn.idToken() : signIn.idToken;
      return { method: "id_token", id_token: text(token, "idToken") };
    }
    case "device":
      return {
        method: "device",
        thing_name: text(signIn.thingName, "thingName"),
        secret: text(signIn.secret, "secret"),
      };
    default:
      throw new TypeError(
        'sign in with { method: "password", username, password }, ' +
          '{ method: "id_token", idToken } or { method: "device", thingName, secret }',
      );
  }
}

/** @param {unknown} value @returns {number} ms since the epoch */
function parseTime(value) {
  if (typeof value === "number") {
    return value < 1e11 ? value * 1000 : value; // seconds (Cognito's JSON) or ms
  }
  const parsed = Date.parse(String(value));
  if (Number.isNaN(parsed)) {
    throw new TypeError(`not a time: ${String(value)}`);
  }
  return parsed;
}

/**
 * A `fetch` that turns network failures into {@link ServiceUnavailable} and reads JSON.
 * @param {Fetch} fetchImpl
 * @param {string} url
 * @param {RequestInit} init
 * @param {number} timeoutMs
 * @returns {Promise<{ status: number, headers: Headers, body: Record<string, any> }>}
 */
export async function requestJson(fetchImpl, url, init, timeoutMs) {
  const timer = new AbortController();
  const outer = init.signal;
  const onAbort = () => timer.abort(outer?.reason);
  outer?.addEventListener("abort", onAbort);
  const timeout = setTimeout(() => timer.abort(new Error("timed out")), timeoutMs);
  try {
    const response = await fetchImpl(url, { ...init, signal: timer.signal });
    const text = await response.text();
    /** @type {Record<string, any>} */
    let body = {};
    try {
      const parsed = text ? JSON.parse(text) : {};
      body = parsed && typeof parsed === "object" ? parsed : {};
    } catch {
      body = {};
    }
    return { status: response.status, headers: response.headers, body };
  } catch (error) {
    if (outer?.aborted) {
      throw error;
    }
    const why = error instanceof Error ? error.message : String(error);
    if (timer.signal.aborted) {
      throw new ConnectTimeout(`${url} did not answer within ${timeoutMs} ms`);
    }
    throw new ServiceUnavailable(`cannot reach ${url}: ${why}`);
  } finally {
    clearTimeout(timeout);
    outer?.removeEventListener("abort", onAbort);
  }
}

/**
 * Sign in: `POST {apiUrl}/v1/login`.
 * @param {Fetch} fetchImpl
 * @param {string} apiUrl
 * @param {Record<string, string>} body
 * @param {number} [timeoutMs]
 * @param {AbortSignal} [signal] ends the request (the client closed)
 * @returns {Promise<Session>}
 * @throws {SignInFailed} refused; {@link RateLimited} when throttled;
 *   {@link ServiceUnavailable} when unreachable or broken
 */
export async function login(fetchImpl, apiUrl, body, timeoutMs = 30_000, signal = undefined) {
  const url = `${apiUrl.replace(/\/+$/, "")}/v1/login`;
  /** @type {RequestInit} */
  const init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  if (signal) init.signal = signal;
  const answer = await requestJson(
    fetchImpl,
    url,
    init,
    timeoutMs,
  );
  const { status, body: data } = answer;
  const message = String(data.message || `login answered HTTP ${status}`);
  if (status === 429) {
    throw new RateLimited(message, Number(answer.headers.get("retry-after")) || 60);
  }
  if (status === 401 || status === 403) {
    throw new SignInFailed(message);
  }
  if (status === 400) {
    throw new BadRequest(message);
  }
  if (status !== 200) {
    throw new ServiceUnavailable(message);
  }
  try {
    return {
      identityId: String(data.identityId),
      token: String(data.token),
      expiresAt: parseTime(data.expiresAt),
      region: String(data.region),
      iotEndpoint: String(data.iot.endpoint),
      iotPort: Number(data.iot.port ?? 443),
      topicPrefix: String(data.iot.topicPrefix),
      apiUrl: String(data.api.url),
      channels: Array.isArray(data.channels) ? data.channels.map(String) : [],
    };
  } catch (error) {
    throw new ServiceUnavailable(`the login answer is incomplete: ${String(error)}`);
  }
}

/**
 * Current credentials for the signed-in identity, renewed ahead of expiry; one renewal at a
 * time however many callers wait for it.
 */
export class CredentialSource {
  /**
   * @param {{ fetch: Fetch, apiUrl: string, signIn: SignIn, cognitoEndpoint?: string | null,
   *   refreshMarginMs: number, now?: () => number, timeoutMs?: number }} options
   */
  constructor(options) {
    this.options = options;
    this.now = options.now ?? Date.now;
    /** @type {Session | null} */
    this.session = null;
    /** @type {Credentials | null} */
    this.credentials = null;
    /** @private @type {number} */
    this._obtainedAt = 0;
    /** @private @type {Promise<Credentials> | null} */
    this._renewing = null;
    /** The last sign-in refusal (a throttle aside); null once a sign-in succeeds. */
    /** @type {SignInFailed | null} */
    this.refused = null;
    this.logins = 0;
    this.refreshes = 0;
    /** Aborted by {@link CredentialSource#close}. */
    this.abort = new AbortController();
  }

  /**
   * The renewal margin for credentials obtained at `from` that expire at `to`: the configured
   * margin, but at most a quarter of their lifetime (short-lived credentials are used too).
   * @private @param {number} from @param {number} to
   */
  _margin(from, to) {
    return Math.min(this.options.refreshMarginMs, (to - from) / 4);
  }

  /** @private @returns {Promise<Session>} */
  async _ensureSession() {
    const session = this.session;
    if (session && session.expiresAt - this._margin(this._obtainedAt, session.expiresAt) > this.now()) {
      return session;
    }
    const { fetch, apiUrl, signIn, timeoutMs } = this.options;
    try {
      const fresh = await login(fetch, apiUrl, await loginBody(signIn), timeoutMs, this.abort.signal);
      this.refused = null;
      this.session = fresh;
      this.logins += 1;
      return fresh;
    } catch (error) {
      if (error instanceof SignInFailed && !(error instanceof RateLimited)) {
        this.refused = error;
      }
      throw error;
    }
  }

  /**
   * The current login, signing in first when needed.
   * @returns {Promise<Session>}
   */
  async getSession() {
    await this.get();
    return /** @type {Session} */ (this.session);
  }

  /**
   * Credentials valid for at least the renewal margin (renewing them if needed).
   * @returns {Promise<Credentials>}
   */
  get() {
    const current = this.credentials;
    if (current && current.expiration - this._margin(this._obtainedAt, current.expiration) > this.now()) {
      return Promise.resolve(current);
    }
    if (!this._renewing) {
      this._renewing = this._renew().finally(() => {
        this._renewing = null;
      });
    }
    return this._renewing;
  }

  /** Forget the cached credentials (after an answer that says they expired). */
  invalidate() {
    this.credentials = null;
  }

  /** Refuse further requests and end those under way. */
  close() {
    this.abort.abort(new Error("closed"));
  }

  /** @private @returns {Promise<Credentials>} */
  async _renew() {
    let session = await this._ensureSession();
    let credentials;
    try {
      credentials = await this._exchange(session);
    } catch (error) {
      if (!(error instanceof SignInFailed)) {
        throw error;
      }
      this.session = null; // the token was refused (expired early, identity reset): once more
      session = await this._ensureSession();
      try {
        credentials = await this._exchange(session);
      } catch (again) {
        if (again instanceof SignInFailed) {
          this.refused = again;
        }
        throw again;
      }
    }
    this._obtainedAt = this.now();
    this.credentials = credentials;
    this.refreshes += 1;
    return credentials;
  }

  /** @private @param {Session} session @returns {Promise<Credentials>} */
  async _exchange(session) {
    const url =
      this.options.cognitoEndpoint || `https://cognito-identity.${session.region}.amazonaws.com/`;
    const answer = await requestJson(
      this.options.fetch,
      url,
      {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": "AWSCognitoIdentityService.GetCredentialsForIdentity",
        },
        body: JSON.stringify({
          IdentityId: session.identityId,
          Logins: { "cognito-identity.amazonaws.com": session.token },
        }),
        signal: this.abort.signal,
      },
      this.options.timeoutMs ?? 30_000,
    );
    const { status, body } = answer;
    if (status !== 200) {
      const kind = String(body.__type || "");
      const message = String(body.message || body.Message || `HTTP ${status}`);
      if (kind.includes("NotAuthorized") || [400, 401, 403].includes(status)) {
        throw new SignInFailed(`GetCredentialsForIdentity refused the token: ${message}`);
      }
      throw new ServiceUnavailable(`GetCredentialsForIdentity failed: ${message}`);
    }
    const raw = body.Credentials;
    return {
      accessKeyId: String(raw.AccessKeyId),
      secretAccessKey: String(raw.SecretKey),
      sessionToken: String(raw.SessionToken),
      expiration: parseTime(raw.Expiration),
    };
  }
}
