/**
 * The channels API over HTTPS, SigV4-signed (`execute-api`) with the identity's credentials.
 *
 * @module
 */

import {
  AccessDenied,
  BadRequest,
  CursorExpired,
  ServiceUnavailable,
  SignInFailed,
} from "./errors.js";
import { requestJson } from "./session.js";
import { signRequest } from "./sigv4.js";

/** @typedef {import("./session.js").CredentialSource} CredentialSource */
/** @typedef {import("./session.js").Fetch} Fetch */

/**
 * What `GET /v1/channels/{channel}/changes` answers.
 * @typedef {{ channel: string, head: number, epoch: number,
 *   changes: import("./ordering.js").Envelope[], more?: boolean }} ChangesPage
 */

/**
 * `Retry-After` in seconds (1 to 300), or null when absent or not a number of seconds.
 * @param {Headers} headers
 */
function retryAfter(headers) {
  const text = (headers.get("retry-after") || "").trim();
  return /^\d+$/.test(text) ? Math.min(300, Math.max(1, Number(text))) : null;
}

/**
 * The path of a channel: each segment percent-encoded (an identity id holds a `:`).
 * @param {string} channel
 */
export function channelPath(channel) {
  return `/v1/channels/${channel.split("/").map(encodeURIComponent).join("/")}`;
}

/** `head` and `changes` of a channel, as the signed-in identity. */
export class ChannelsApi {
  /**
   * @param {{ fetch: Fetch, credentials: CredentialSource, region: string, apiUrl: string }} options
   */
  constructor(options) {
    this.options = options;
    this.apiUrl = options.apiUrl.replace(/\/+$/, "");
    this.calls = 0;
    /** Aborted by {@link ChannelsApi#close}: ends the requests under way (long-polls). */
    this.abort = new AbortController();
  }

  /** End the requests under way and refuse new ones. */
  close() {
    this.abort.abort(new Error("closed"));
  }

  /**
   * @private
   * @param {string} path
   * @param {Record<string, number>} params
   * @param {number} timeoutMs
   * @returns {Promise<Record<string, any>>}
   */
  async _get(path, params, timeoutMs) {
    const query = Object.entries(params)
      .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`)
      .join("&");
    const url = `${this.apiUrl}${path}${query ? `?${query}` : ""}`;
    const { credentials: source, region, fetch } = this.options;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const credentials = await source.get();
      const headers = await signRequest({
        method: "GET",
        url,
        region,
        service: "execute-api",
        credentials,
        contentSha256: false,
      });
      const answer = await requestJson(
        fetch,
        url,
        { method: "GET", headers, signal: this.abort.signal },
        timeoutMs,
      );
      this.calls += 1;
      const { status, body } = answer;
      const message = String(body.message || `HTTP ${status}`);
      if (status === 200) {
        return body;
      }
      if (status === 410) {
        throw new CursorExpired(message, Number(body.head ?? 0), Number(body.epoch ?? 0));
      }
      if (status === 403 && attempt === 0 && /expired/i.test(message)) {
        source.invalidate();
        continue;
      }
      if (status === 403) {
        throw new AccessDenied(message);
      }
      if (status === 401) {
        throw new SignInFailed(message);
      }
      if (status === 400 || status === 404) {
        throw new BadRequest(message);
      }
      throw new ServiceUnavailable(message, retryAfter(answer.headers), String(body.error || ""));
    }
    throw new ServiceUnavailable("the API kept refusing fresh credentials");
  }

  /**
   * The channel's head and epoch.
   * @param {string} channel
   * @returns {Promise<{ channel: string, head: number, epoch: number }>}
   */
  async head(channel) {
    const body = await this._get(channelPath(channel), {}, 30_000);
    return { channel, head: Number(body.head), epoch: Number(body.epoch) };
  }

  /**
   * The changes after `after` (long-polls up to `waitS` seconds when there are none yet).
   * @param {string} channel
   * @param {number} after
   * @param {{ limit?: number, waitS?: number, epoch?: number | null }} [options]
   * @returns {Promise<ChangesPage>}
   */
  async changes(channel, after, options = {}) {
    const { limit = 1000, waitS = 0, epoch = null } = options;
    /** @type {Record<string, number>} */
    const params = { after, limit };
    if (waitS) {
      params.wait = Math.floor(waitS);
    }
    if (epoch !== null) {
      params.epoch = epoch;
    }
    const body = await this._get(`${channelPath(channel)}/changes`, params, 30_000 + waitS * 1000);
    return /** @type {ChangesPage} */ (body);
  }
}
