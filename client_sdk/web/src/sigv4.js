/**
 * AWS Signature Version 4: sign an HTTP request ({@link signRequest}) or presign a URL
 * ({@link presignUrl}) with temporary AWS credentials.
 *
 * The web client signs two kinds of request, as the Python client does:
 *
 * - its API calls (`GET /v1/channels/...`) to API Gateway, service `execute-api`, with an
 *   `Authorization` header;
 * - the `wss://<endpoint>/mqtt` WebSocket URL of AWS IoT, service `iotdevicegateway`,
 *   presigned in its query string with the session token appended after the signature
 *   (`tokenAfterSigning: true`), which is what AWS IoT requires.
 *
 * The rules are AWS's for every service but S3: the canonical URI is the path as sent on the
 * wire with dot and empty segments removed, percent-encoded once more (every byte but the
 * unreserved characters and `/`), so `/users/us-east-1:abc` is signed as
 * `/users/us-east-1%3Aabc` and `/a%2Fb` as `/a%252Fb`; query parameters are percent-decoded,
 * re-encoded and sorted. Pass the URL exactly as it will be sent: segments already
 * percent-encoded where needed (`encodeURIComponent`), since `fetch` and `WebSocket` escape
 * a non-ASCII or space character themselves and the signature would then not match.
 *
 * Only `crypto.subtle` and `TextEncoder` are used: both exist in browsers and Node 20 or
 * later; React Native needs a Web Crypto polyfill. Signing is asynchronous because
 * `crypto.subtle` is.
 *
 * @module
 */

/**
 * AWS credentials; temporary ones carry a session token.
 * @typedef {{ readonly accessKeyId: string, readonly secretAccessKey: string,
 *             readonly sessionToken?: string | null | undefined }} Credentials
 */

/**
 * A request body: text (sent as UTF-8) or bytes.
 * @typedef {string | Uint8Array | ArrayBuffer} Body
 */

/**
 * What to sign with an `Authorization` header.
 * @typedef {object} SignRequestOptions
 * @property {string} method The HTTP method (`GET`, `POST`…).
 * @property {string} url The absolute URL as it will be sent (`https://host/path?query`).
 * @property {Readonly<Record<string, string>>} [headers] Headers that will be sent and are
 *   signed with the request (`Content-Type`…); `Host` is taken from the URL unless given.
 * @property {Body | null} [body] The body that will be sent; none by default.
 * @property {string} region The AWS region (`us-east-1`).
 * @property {string} service The signing name (`execute-api` for API Gateway).
 * @property {Credentials} credentials
 * @property {Date} [now] The signing time; the current time by default.
 * @property {boolean} [contentSha256] Also send (and sign) `X-Amz-Content-Sha256`, the body's
 *   SHA-256, which API Gateway accepts and checks against the body; `true` by default.
 */

/**
 * What to presign in a URL's query string.
 * @typedef {object} PresignUrlOptions
 * @property {string} url The absolute URL (`wss://endpoint/mqtt`), with any query of its own.
 * @property {string} region The AWS region.
 * @property {string} service The signing name (`iotdevicegateway` for AWS IoT's WebSocket).
 * @property {Credentials} credentials
 * @property {Date} [now] The signing time; the current time by default.
 * @property {number} [expiresIn] `X-Amz-Expires`, in seconds (1 to 604800); omitted by
 *   default, as AWS IoT's own SDKs do (the URL is then valid within the clock skew AWS allows).
 * @property {boolean} [tokenAfterSigning] Append `X-Amz-Security-Token` after the signature,
 *   unsigned, as AWS IoT requires; otherwise the token is part of the signed query (every other
 *   service). `false` by default.
 */

/**
 * The headers {@link signRequest} adds to the request.
 * @typedef {{ "Authorization": string, "X-Amz-Date": string, "X-Amz-Security-Token"?: string,
 *             "X-Amz-Content-Sha256"?: string }} SignedHeaders
 */

/**
 * The part of Web Crypto used here (the standard library types do not declare it).
 * @typedef {object} Subtle
 * @property {(algorithm: string, data: Uint8Array) => Promise<ArrayBuffer>} digest
 * @property {(format: "raw", key: Uint8Array, algorithm: { name: "HMAC", hash: string },
 *             extractable: boolean, usages: string[]) => Promise<unknown>} importKey
 * @property {(algorithm: "HMAC", key: unknown, data: Uint8Array) => Promise<ArrayBuffer>} sign
 */

export const ALGORITHM = "AWS4-HMAC-SHA256";
const MAX_EXPIRES_S = 604800;
const DEFAULT_PORTS = /** @type {Readonly<Record<string, string>>} */ ({
  http: "80",
  https: "443",
  ws: "80",
  wss: "443",
});
/** The headers signRequest sets itself: given ones of these names are replaced. */
const ADDED = new Set(["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"]);
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const HEX = "0123456789ABCDEF";

/**
 * Sign a request with an `Authorization` header (SigV4).
 *
 * Returns the headers to add to the request, besides those given: `Authorization`,
 * `X-Amz-Date`, `X-Amz-Security-Token` (temporary credentials) and `X-Amz-Content-Sha256`
 * (unless `contentSha256: false`). All of them, the given headers and `Host` are signed.
 *
 * @param {SignRequestOptions} options
 * @returns {Promise<SignedHeaders>}
 */
export async function signRequest(options) {
  const { method, url, region, service, credentials } = options;
  const now = options.now ?? new Date();
  const parts = parseUrl(url);
  const amzDate = amzDateOf(now);
  const bodyBytes = toBytes(options.body ?? new Uint8Array(0));
  const payloadHash = hex(await subtle().digest("SHA-256", bodyBytes));

  /** @type {Record<string, string>} */
  const added = { "X-Amz-Date": amzDate };
  const token = credentials.sessionToken;
  if (token) added["X-Amz-Security-Token"] = token;
  if (options.contentSha256 ?? true) added["X-Amz-Content-Sha256"] = payloadHash;

  const given = Object.entries(options.headers ?? {}).filter(
    ([name]) => !ADDED.has(name.trim().toLowerCase()),
  );
  const headers = headerMap([...given, ...Object.entries(added)]);
  if (!headers.has("host")) headers.set("host", [parts.host]);
  const names = [...headers.keys()].sort();
  const canonical = [
    method.toUpperCase(),
    canonicalUri(parts.path),
    canonicalQuery(parts.query),
    names.map((name) => `${name}:${headerValue(headers.get(name) ?? [])}\n`).join(""),
    names.join(";"),
    payloadHash,
  ].join("\n");
  const scope = credentialScope(amzDate, region, service);
  const signature = await sign(credentials.secretAccessKey, amzDate, region, service, canonical);
  return /** @type {SignedHeaders} */ ({
    Authorization:
      `${ALGORITHM} Credential=${credentials.accessKeyId}/${scope}, ` +
      `SignedHeaders=${names.join(";")}, Signature=${signature}`,
    ...added,
  });
}

/**
 * Presign a URL (SigV4 in the query string), signing only its `host`, with the SHA-256 of
 * an empty payload: what a WebSocket upgrade (`GET /mqtt` on AWS IoT) needs.
 *
 * @param {PresignUrlOptions} options
 * @returns {Promise<string>} The URL with its `X-Amz-*` parameters.
 */
export async function presignUrl(options) {
  const { url, region, service, credentials } = options;
  const now = options.now ?? new Date();
  const parts = parseUrl(url);
  const amzDate = amzDateOf(now);
  const scope = credentialScope(amzDate, region, service);
  const token = credentials.sessionToken;
  const tokenAfter = options.tokenAfterSigning ?? false;

  /** @type {Array<[string, string]>} */
  const params = [
    ["X-Amz-Algorithm", ALGORITHM],
    ["X-Amz-Credential", `${credentials.accessKeyId}/${scope}`],
    ["X-Amz-Date", amzDate],
    ["X-Amz-SignedHeaders", "host"],
  ];
  if (options.expiresIn !== undefined) {
    const expires = options.expiresIn;
    if (!Number.isInteger(expires) || expires < 1 || expires > MAX_EXPIRES_S) {
      throw new RangeError(`expiresIn must be a whole number of seconds from 1 to ${MAX_EXPIRES_S}`);
    }
    params.push(["X-Amz-Expires", String(expires)]);
  }
  if (token && !tokenAfter) params.push(["X-Amz-Security-Token", token]);
  const encoded = params.map(([name, value]) => `${uriEncode(name)}=${uriEncode(value)}`);
  const query = [parts.query, ...encoded].filter((piece) => piece !== "").join("&");

  const canonical = [
    "GET",
    canonicalUri(parts.path),
    canonicalQuery(query),
    `host:${parts.host}\n`,
    "host",
    await emptyPayloadHash(),
  ].join("\n");
  const signature = await sign(credentials.secretAccessKey, amzDate, region, service, canonical);
  let signed = `${parts.origin}${parts.path}?${query}&X-Amz-Signature=${signature}`;
  if (token && tokenAfter) signed += `&X-Amz-Security-Token=${uriEncode(token)}`;
  return signed;
}

// --- canonical request -----------------------------------------------------------------

/**
 * The canonical URI of a path as sent (non-S3 rules): dot and empty segments removed, then
 * every byte but the unreserved characters and `/` percent-encoded (again).
 *
 * @param {string} path
 * @returns {string}
 */
export function canonicalUri(path) {
  if (path === "") return "/";
  /** @type {string[]} */
  const kept = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      kept.pop();
      continue;
    }
    kept.push(segment);
  }
  const lead = path.startsWith("/") ? "/" : "";
  const trail = path.endsWith("/") && kept.length > 0 ? "/" : "";
  return uriEncode(lead + kept.join("/") + trail, "/");
}

/**
 * The canonical query string: parameters percent-decoded (`+` stays a plus sign),
 * re-encoded, sorted by name then value.
 *
 * @param {string} rawQuery The query as sent, without `?`.
 * @returns {string}
 */
export function canonicalQuery(rawQuery) {
  /** @type {Array<[string, string]>} */
  const pairs = [];
  for (const piece of rawQuery.split("&")) {
    if (piece === "") continue;
    const at = piece.indexOf("=");
    const rawName = at < 0 ? piece : piece.slice(0, at);
    const rawValue = at < 0 ? "" : piece.slice(at + 1);
    pairs.push([uriEncodeBytes(percentDecode(rawName)), uriEncodeBytes(percentDecode(rawValue))]);
  }
  pairs.sort(([n1, v1], [n2, v2]) => compare(n1, n2) || compare(v1, v2));
  return pairs.map(([name, value]) => `${name}=${value}`).join("&");
}

/**
 * @param {string} a
 * @param {string} b
 */
function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Header names lower-cased, the values of one name in order.
 * @param {ReadonlyArray<[string, string]>} headers
 * @returns {Map<string, string[]>}
 */
function headerMap(headers) {
  /** @type {Map<string, string[]>} */
  const map = new Map();
  for (const [name, value] of headers) {
    const key = name.trim().toLowerCase();
    map.set(key, [...(map.get(key) ?? []), String(value)]);
  }
  return map;
}

/**
 * A header's canonical value: runs of spaces and tabs collapsed, trimmed, values joined.
 * @param {readonly string[]} values
 */
function headerValue(values) {
  return values.map((value) => value.replace(/[ \t]+/g, " ").replace(/^[ \t]+|[ \t]+$/g, "")).join(",");
}

// --- signing ---------------------------------------------------------------------------

/**
 * @param {string} amzDate
 * @param {string} region
 * @param {string} service
 */
function credentialScope(amzDate, region, service) {
  return `${amzDate.slice(0, 8)}/${region}/${service}/aws4_request`;
}

/**
 * The signature of a canonical request.
 * @param {string} secret
 * @param {string} amzDate
 * @param {string} region
 * @param {string} service
 * @param {string} canonical
 * @returns {Promise<string>}
 */
async function sign(secret, amzDate, region, service, canonical) {
  const digest = hex(await subtle().digest("SHA-256", toUtf8Bytes(canonical)));
  const scope = credentialScope(amzDate, region, service);
  const stringToSign = `${ALGORITHM}\n${amzDate}\n${scope}\n${digest}`;
  let key = toUtf8Bytes(`AWS4${secret}`);
  for (const part of [amzDate.slice(0, 8), region, service, "aws4_request"]) {
    key = await hmac(key, part);
  }
  return hex(await hmac(key, stringToSign));
}

/**
 * @param {Uint8Array} key
 * @param {string} data
 * @returns {Promise<Uint8Array>}
 */
async function hmac(key, data) {
  const crypto = subtle();
  const imported = await crypto.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return new Uint8Array(await crypto.sign("HMAC", imported, toUtf8Bytes(data)));
}

/** @returns {Promise<string>} */
async function emptyPayloadHash() {
  return hex(await subtle().digest("SHA-256", new Uint8Array(0)));
}

/** @returns {Subtle} */
function subtle() {
  const crypto = /** @type {{ crypto?: { subtle?: Subtle } }} */ (globalThis).crypto;
  if (!crypto?.subtle) {
    throw new Error("SigV4 signing needs Web Crypto (crypto.subtle); install a polyfill");
  }
  return crypto.subtle;
}

// --- encoding --------------------------------------------------------------------------

/**
 * @param {string} text
 * @returns {Uint8Array}
 */
function toUtf8Bytes(text) {
  const Encoder = /** @type {{ TextEncoder: new () => { encode(text: string): Uint8Array } }} */ (
    /** @type {unknown} */ (globalThis)
  ).TextEncoder;
  return new Encoder().encode(text);
}

/**
 * @param {Body} body
 * @returns {Uint8Array}
 */
function toBytes(body) {
  if (typeof body === "string") return toUtf8Bytes(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  return body;
}

/**
 * @param {ArrayBuffer | Uint8Array} bytes
 * @returns {string}
 */
function hex(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  return Array.from(view, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Percent-encode every UTF-8 byte of `text` except the unreserved characters (and those
 * in `safe`), with upper-case hex digits, as SigV4 does.
 *
 * @param {string} text
 * @param {string} [safe]
 * @returns {string}
 */
export function uriEncode(text, safe = "") {
  return uriEncodeBytes(toUtf8Bytes(text), safe);
}

/**
 * @param {Uint8Array} bytes
 * @param {string} [safe]
 * @returns {string}
 */
function uriEncodeBytes(bytes, safe = "") {
  let out = "";
  for (const byte of bytes) {
    const char = String.fromCharCode(byte);
    if (byte < 0x80 && (UNRESERVED.test(char) || safe.includes(char))) {
      out += char;
    } else {
      out += `%${HEX[byte >> 4]}${HEX[byte & 15]}`;
    }
  }
  return out;
}

/**
 * Percent-decode to bytes, leniently: a `%` not followed by two hex digits stays as it is.
 * @param {string} text
 * @returns {Uint8Array}
 */
function percentDecode(text) {
  const raw = toUtf8Bytes(text);
  /** @type {number[]} */
  const out = [];
  for (let i = 0; i < raw.length; i++) {
    const pair = String.fromCharCode(raw[i + 1] ?? 0, raw[i + 2] ?? 0);
    if (raw[i] === 0x25 && /^[0-9A-Fa-f]{2}$/.test(pair)) {
      out.push(parseInt(pair, 16));
      i += 2;
    } else {
      out.push(/** @type {number} */ (raw[i]));
    }
  }
  return new Uint8Array(out);
}

// --- URLs and dates --------------------------------------------------------------------

/**
 * Split an absolute URL as sent, without normalising it (the `URL` class would re-encode
 * the path, and React Native's is incomplete).
 *
 * @param {string} url
 * @returns {{ origin: string, host: string, path: string, query: string }}
 */
function parseUrl(url) {
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#.*)?$/.exec(url);
  if (!match) throw new TypeError(`not an absolute URL: ${url}`);
  const scheme = /** @type {string} */ (match[1]).toLowerCase();
  const authority = /** @type {string} */ (match[2]);
  const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
  const portMatch = /^(.*?)(?::(\d*))?$/.exec(hostPort);
  const hostname = (portMatch?.[1] ?? hostPort).toLowerCase();
  const port = portMatch?.[2] ?? "";
  const host = port === "" || DEFAULT_PORTS[scheme] === port ? hostname : `${hostname}:${port}`;
  if (hostname === "") throw new TypeError(`no host in URL: ${url}`);
  return {
    origin: `${scheme}://${authority}`,
    host,
    path: match[3] || "/",
    query: match[4] ?? "",
  };
}

/**
 * `yyyymmddTHHMMSSZ` in UTC.
 * @param {Date} date
 */
function amzDateOf(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}
