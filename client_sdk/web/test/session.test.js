// Sign-in, credential renewal and the channels API's answers, with an in-memory `fetch` and
// clock: pure logic (the real services are exercised in Chromium by tests/e2e/test_web_*.py).
import assert from "node:assert/strict";
import { test } from "node:test";

import { ChannelsApi, channelPath } from "../src/api.js";
import {
  AccessDenied,
  BadRequest,
  CursorExpired,
  RateLimited,
  ServiceUnavailable,
  SignInFailed,
} from "../src/errors.js";
import { CredentialSource, login, loginBody } from "../src/session.js";

const LOGIN = {
  identityId: "us-east-1:abc",
  token: "jwt",
  expiresAt: "2026-11-29T12:00:00Z",
  region: "us-east-1",
  iot: { endpoint: "localhost", port: 8443, topicPrefix: "tidings/dev/" },
  api: { url: "https://127.0.0.1:8444/dev" },
  channels: ["users/us-east-1:abc/todos", "public/scores"],
};

/** A fetch answering from `routes` (url substring → [status, body, headers]); calls kept. */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push({ url, init });
    for (const [part, answer] of Object.entries(routes)) {
      if (url.includes(part)) {
        const [status, body, headers = {}] = typeof answer === "function" ? answer(calls) : answer;
        return new Response(JSON.stringify(body), { status, headers });
      }
    }
    throw new TypeError("fetch failed");
  };
  return { fetch, calls };
}

test("loginBody: one shape per method, and a clear error for anything else", async () => {
  assert.deepEqual(await loginBody({ method: "password", username: "ann", password: "pw" }), {
    method: "password",
    username: "ann",
    password: "pw",
  });
  assert.deepEqual(await loginBody({ method: "id_token", idToken: async () => "jwt" }), {
    method: "id_token",
    id_token: "jwt",
  });
  assert.deepEqual(await loginBody({ method: "device", thingName: "t1", secret: "s" }), {
    method: "device",
    thing_name: "t1",
    secret: "s",
  });
  await assert.rejects(loginBody({ method: "password", username: "", password: "pw" }), /username/);
  await assert.rejects(loginBody(/** @type {any} */ ({ method: "magic" })), /sign in with/);
  await assert.rejects(loginBody(/** @type {any} */ (null)), TypeError);
});

test("login maps the service's answers to the client's errors", async () => {
  const body = { method: "password", username: "ann", password: "pw" };
  const cases = [
    [401, SignInFailed],
    [403, SignInFailed],
    [400, BadRequest],
    [500, ServiceUnavailable],
  ];
  for (const [status, kind] of cases) {
    const { fetch } = fakeFetch({ "/v1/login": [status, { error: "x", message: `said ${status}` }] });
    await assert.rejects(login(fetch, "https://api/dev", body), (error) => {
      assert.ok(error instanceof kind, `${status} → ${error.name}`);
      assert.equal(error.message, `said ${status}`);
      return true;
    });
  }
  const throttled = fakeFetch({ "/v1/login": [429, { message: "slow down" }, { "Retry-After": "7" }] });
  await assert.rejects(login(throttled.fetch, "https://api/dev", body), (error) => {
    assert.ok(error instanceof RateLimited);
    assert.equal(error.retryAfter, 7);
    return true;
  });
  const down = fakeFetch({});
  await assert.rejects(login(down.fetch, "https://api/dev", body), ServiceUnavailable);
  const broken = fakeFetch({ "/v1/login": [200, { identityId: "x" }] });
  await assert.rejects(login(broken.fetch, "https://api/dev", body), /incomplete/);
  const ok = fakeFetch({ "/v1/login": [200, LOGIN] });
  const session = await login(ok.fetch, "https://api/dev/", body);
  assert.equal(ok.calls[0].url, "https://api/dev/v1/login");
  assert.equal(session.iotPort, 8443);
  assert.equal(session.expiresAt, Date.parse(LOGIN.expiresAt));
});

function credentialsAnswer(expirationS) {
  return [
    200,
    { Credentials: { AccessKeyId: "AK", SecretKey: "SK", SessionToken: "ST", Expiration: expirationS } },
  ];
}

test("credentials of 60 s are renewed after 45 s, not at every call, one renewal at a time", async () => {
  let now = Date.parse("2026-11-29T10:00:00Z");
  const { fetch, calls } = fakeFetch({
    "/v1/login": [200, { ...LOGIN, expiresAt: "2026-11-29T11:00:00Z" }],
    cognito: () => credentialsAnswer(now / 1000 + 60),
  });
  const source = new CredentialSource({
    fetch,
    apiUrl: "https://api/dev",
    signIn: { method: "password", username: "ann", password: "pw" },
    cognitoEndpoint: "http://cognito.local/",
    refreshMarginMs: 300_000,
    now: () => now,
  });
  const [a, b] = await Promise.all([source.get(), source.get()]);
  assert.equal(a, b);
  assert.equal(source.refreshes, 1);
  now += 40_000;
  await source.get();
  assert.equal(source.refreshes, 1); // 20 s left: more than a quarter of 60 s
  now += 6_000;
  await source.get();
  assert.equal(source.refreshes, 2);
  assert.equal(source.logins, 1); // the token (1 h) still had most of its life
  const exchange = calls.find((call) => call.url.includes("cognito"));
  assert.equal(exchange.init.headers["X-Amz-Target"], "AWSCognitoIdentityService.GetCredentialsForIdentity");
  assert.deepEqual(JSON.parse(exchange.init.body), {
    IdentityId: "us-east-1:abc",
    Logins: { "cognito-identity.amazonaws.com": "jwt" },
  });
});

test("a refused token signs in again once; a refused sign-in is remembered", async () => {
  let refusals = 1;
  let logins = 0;
  const { fetch } = fakeFetch({
    "/v1/login": () => {
      logins += 1;
      return logins > 2 ? [401, { message: "Wrong user name or password." }] : [200, LOGIN];
    },
    cognito: () =>
      refusals-- > 0
        ? [400, { __type: "NotAuthorizedException", message: "Invalid login token." }]
        : credentialsAnswer(Date.now() / 1000 + 3600),
  });
  const source = new CredentialSource({
    fetch,
    apiUrl: "https://api/dev",
    signIn: { method: "password", username: "ann", password: "pw" },
    cognitoEndpoint: "http://cognito.local/",
    refreshMarginMs: 300_000,
  });
  await source.get();
  assert.equal(source.logins, 2);
  assert.equal(source.refused, null);
  source.invalidate();
  source.session = null;
  await assert.rejects(source.get(), SignInFailed);
  assert.ok(source.refused instanceof SignInFailed);
});

test("the channels API: paths, signing, and its refusals as errors", async () => {
  assert.equal(channelPath("users/us-east-1:abc/todos"), "/v1/channels/users/us-east-1%3Aabc/todos");
  const credentials = {
    get: async () => ({ accessKeyId: "AK", secretAccessKey: "SK", sessionToken: "ST", expiration: 0 }),
    invalidate() {
      this.invalidated = true;
    },
  };
  const answers = {
    "/gone/": [410, { error: "cursor_expired", message: "too old", head: 40, epoch: 2 }],
    "/secret/": [403, { error: "forbidden", message: "not yours" }],
    "/bad/": [400, { error: "bad_request", message: "after must be a number" }],
    "/busy/": [503, { error: "too_many_waits", message: "wait" }, { "Retry-After": "5" }],
    "/ok/": [200, { channel: "ok/x", head: 3, epoch: 1, changes: [] }],
  };
  const { fetch, calls } = fakeFetch(answers);
  const api = new ChannelsApi({ fetch, credentials: /** @type {any} */ (credentials), region: "us-east-1", apiUrl: "https://api/dev/" });
  assert.deepEqual(await api.head("ok/x"), { channel: "ok/x", head: 3, epoch: 1 });
  assert.match(calls[0].init.headers.Authorization, /^AWS4-HMAC-SHA256 Credential=AK\/\d{8}\/us-east-1\/execute-api\/aws4_request/);
  assert.equal(calls[0].init.headers["X-Amz-Security-Token"], "ST");
  await api.changes("ok/x", 5, { waitS: 20, limit: 10, epoch: 1 });
  assert.equal(calls[1].url, "https://api/dev/v1/channels/ok/x/changes?after=5&limit=10&wait=20&epoch=1");
  await assert.rejects(api.changes("gone/x", 1), (error) => {
    assert.ok(error instanceof CursorExpired);
    assert.equal(error.head, 40);
    assert.equal(error.epoch, 2);
    return true;
  });
  await assert.rejects(api.head("secret/x"), AccessDenied);
  await assert.rejects(api.head("bad/x"), BadRequest);
  await assert.rejects(api.head("busy/x"), (error) => {
    assert.ok(error instanceof ServiceUnavailable);
    assert.equal(error.retryAfter, 5);
    assert.equal(error.code, "too_many_waits");
    return true;
  });
});

test("an API 403 that says the credentials expired is retried once with fresh ones", async () => {
  let first = true;
  const { fetch, calls } = fakeFetch({
    "/v1/channels/": () => {
      const answer = first ? [403, { message: "The security token included in the request is expired" }] : [200, { head: 1, epoch: 1 }];
      first = false;
      return answer;
    },
  });
  const credentials = {
    invalidated: 0,
    get: async () => ({ accessKeyId: "AK", secretAccessKey: "SK", sessionToken: "ST", expiration: 0 }),
    invalidate() {
      this.invalidated += 1;
    },
  };
  const api = new ChannelsApi({ fetch, credentials: /** @type {any} */ (credentials), region: "us-east-1", apiUrl: "https://api/dev" });
  assert.deepEqual(await api.head("a/b"), { channel: "a/b", head: 1, epoch: 1 });
  assert.equal(credentials.invalidated, 1);
  assert.equal(calls.length, 2);
});
