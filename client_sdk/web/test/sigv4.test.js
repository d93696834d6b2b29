// SigV4 signing (src/sigv4.js) against AWS's published test suite, and the rules the local
// stack's verifier (infra/local/awsauth/sigv4.py) and AWS apply to Tidings' own requests.
// tests/e2e/test_web_sigv4_against_local_verifier.py checks the signatures with that verifier.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import * as root from "../src/index.js";
import { canonicalQuery, canonicalUri, presignUrl, signRequest } from "../src/sigv4.js";

// The AWS SigV4 test suite ("aws-sig-v4-test-suite", 2015-08-30 revision), as shipped in
// awslabs/aws-c-auth tests/aws-signing-test-suite/v4/<case>/ (commit 495329c2433034bd):
// request.txt, context.json and the expected header-signed-request.txt and
// query-signed-request.txt (X-Amz-Expires=3600).
const SUITE = {
  region: "us-east-1",
  service: "service",
  now: new Date("2015-08-30T12:36:00Z"),
  credentials: {
    accessKeyId: "AKIDEXAMPLE",
    secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  },
};
const SUITE_TOKEN = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
const SCOPE = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
const HOST = "https://example.amazonaws.com";

/** @type {Array<{name: string, method: string, path: string, headers?: Record<string, string>, body?: string, token?: string, contentSha256?: boolean, authorization: string}>} */
const HEADER_CASES = [
  {
    name: "get-vanilla",
    method: "GET",
    path: "/",
    authorization: `AWS4-HMAC-SHA256 ${SCOPE}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31`,
  },
  {
    name: "get-vanilla-query-order-key-case",
    method: "GET",
    path: "/?Param2=value2&Param1=value1",
    authorization: `AWS4-HMAC-SHA256 ${SCOPE}, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500`,
  },
  {
    name: "post-vanilla",
    method: "POST",
    path: "/",
    authorization: `AWS4-HMAC-SHA256 ${SCOPE}, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b`,
  },
  {
    name: "get-utf8",
    method: "GET",
    path: "/ሴ",
    authorization: `AWS4-HMAC-SHA256 ${SCOPE}, SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85`,
  },
  {
    name: "post-x-www-form-urlencoded",
    method: "POST",
    path: "/",
    headers: { "Content-Type": "application/x-www-form-urlencoded", "Content-Length": "13" },
    body: "Param1=value1",
    contentSha256: true,
    authorization: `AWS4-HMAC-SHA256 ${SCOPE}, SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b`,
  },
  {
    name: "get-vanilla-with-session-token",
    method: "GET",
    path: "/",
    token: SUITE_TOKEN,
    authorization: `AWS4-HMAC-SHA256 ${SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8`,
  },
];

const QUERY_CASES = [
  {
    name: "get-vanilla",
    path: "/",
    signed:
      "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
  },
  {
    name: "get-vanilla-query-order-key-case",
    path: "/?Param2=value2&Param1=value1",
    signed:
      "/?Param2=value2&Param1=value1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5",
  },
  {
    name: "get-vanilla-with-session-token",
    path: "/",
    token: SUITE_TOKEN,
    signed: `/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Security-Token=${SUITE_TOKEN}&X-Amz-Signature=7ff2b50b376cb4d151970630573d6291dc128cc5c2a12ffb237f73cc53f67b6c`,
  },
];

describe("AWS SigV4 test suite: Authorization header", () => {
  for (const c of HEADER_CASES) {
    test(c.name, async () => {
      const signed = await signRequest({
        ...SUITE,
        credentials: { ...SUITE.credentials, sessionToken: c.token },
        method: c.method,
        url: HOST + c.path,
        headers: c.headers ?? {},
        body: c.body ?? null,
        contentSha256: c.contentSha256 ?? false,
      });
      assert.equal(signed.Authorization, c.authorization);
      assert.equal(signed["X-Amz-Date"], "20150830T123600Z");
      assert.equal(signed["X-Amz-Security-Token"], c.token);
      if (c.contentSha256) {
        assert.equal(
          signed["X-Amz-Content-Sha256"],
          "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        );
      } else {
        assert.equal("X-Amz-Content-Sha256" in signed, false);
      }
    });
  }
});

describe("AWS SigV4 test suite: presigned URL", () => {
  for (const c of QUERY_CASES) {
    test(c.name, async () => {
      const url = await presignUrl({
        ...SUITE,
        credentials: { ...SUITE.credentials, sessionToken: c.token },
        url: HOST + c.path,
        expiresIn: 3600,
      });
      assert.equal(url, HOST + c.signed);
    });
  }
});

const CREDS = {
  accessKeyId: "ASIATESTKEY000000001",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY",
  sessionToken: "IQoJb3JpZ2luX2Vj/token+with=odd/chars==",
};
const NOW = new Date("2024-05-01T12:00:00Z");

test("the canonical URI encodes the path as sent once more, as non-S3 AWS services do", () => {
  assert.equal(canonicalUri("/v1/users/us-east-1:1234-abcd/todos"), "/v1/users/us-east-1%3A1234-abcd/todos");
  assert.equal(
    canonicalUri("/v1/channels/users/us-east-1%3A1234-abcd/todos"),
    "/v1/channels/users/us-east-1%253A1234-abcd/todos",
  );
  assert.equal(canonicalUri("/topics/a%2Fb"), "/topics/a%252Fb");
  assert.equal(canonicalUri("//a/./b/../c//"), "/a/c/");
  assert.equal(canonicalUri("/"), "/");
  assert.equal(canonicalUri("/~user/a b"), "/~user/a%20b");
});

test("the canonical query decodes, re-encodes and sorts by name then value", () => {
  assert.equal(canonicalQuery("b=2&a=2&a=1&c"), "a=1&a=2&b=2&c=");
  assert.equal(canonicalQuery("a-b=1&a=2"), "a=2&a-b=1");
  assert.equal(canonicalQuery("k=a+b%2Fc%7e&x=%zz"), "k=a%2Bb%2Fc~&x=%25zz");
  assert.equal(canonicalQuery(""), "");
});

test("signRequest adds the date, the session token and the body hash, and signs them", async () => {
  const signed = await signRequest({
    method: "post",
    url: "https://API.example.test:443/v1/users/us-east-1:abc/todos?limit=10",
    headers: { "Content-Type": "application/json", "X-Amz-Date": "stale" },
    body: '{"text":"hi"}',
    region: "us-east-1",
    service: "execute-api",
    credentials: CREDS,
    now: NOW,
  });
  assert.deepEqual(Object.keys(signed).sort(), [
    "Authorization",
    "X-Amz-Content-Sha256",
    "X-Amz-Date",
    "X-Amz-Security-Token",
  ]);
  assert.equal(signed["X-Amz-Date"], "20240501T120000Z");
  assert.equal(signed["X-Amz-Security-Token"], CREDS.sessionToken);
  assert.match(
    signed.Authorization,
    /^AWS4-HMAC-SHA256 Credential=ASIATESTKEY000000001\/20240501\/us-east-1\/execute-api\/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/,
  );
  const bytes = await signRequest({
    method: "POST",
    url: "https://api.example.test/v1/users/us-east-1:abc/todos?limit=10",
    headers: { "content-type": "application/json" },
    body: new TextEncoder().encode('{"text":"hi"}'),
    region: "us-east-1",
    service: "execute-api",
    credentials: CREDS,
    now: NOW,
  });
  assert.deepEqual(bytes, signed, "text and its UTF-8 bytes, default port and host case");
});

test("presignUrl for AWS IoT appends the session token after the signature, unsigned", async () => {
  const options = {
    url: "wss://abc123example-ats.iot.us-east-1.amazonaws.com/mqtt",
    region: "us-east-1",
    service: "iotdevicegateway",
    credentials: CREDS,
    now: NOW,
  };
  const after = await presignUrl({ ...options, tokenAfterSigning: true });
  const [base, query] = after.split("?");
  assert.equal(base, options.url);
  const names = (query ?? "").split("&").map((piece) => piece.split("=")[0]);
  assert.deepEqual(names, [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
  ]);
  assert.ok(after.endsWith(`&X-Amz-Security-Token=${encodeURIComponent(CREDS.sessionToken)}`));
  const { sessionToken: _, ...longTerm } = CREDS;
  const unsigned = await presignUrl({ ...options, credentials: longTerm });
  assert.equal(after.split("&X-Amz-Security-Token=")[0], unsigned, "the token is not signed");

  const inside = await presignUrl(options);
  assert.notEqual(inside.split("&X-Amz-Signature=")[1], unsigned.split("&X-Amz-Signature=")[1]);
  assert.match(inside, /&X-Amz-Security-Token=[^&]+&X-Amz-Signature=[0-9a-f]{64}$/);
});

test("presignUrl refuses an X-Amz-Expires AWS would refuse", async () => {
  for (const expiresIn of [0, 1.5, 604801]) {
    await assert.rejects(
      presignUrl({ url: "wss://h/mqtt", region: "r", service: "s", credentials: CREDS, expiresIn }),
      RangeError,
    );
  }
});

test("a relative URL is refused", async () => {
  await assert.rejects(
    signRequest({ method: "GET", url: "/v1/x", region: "r", service: "s", credentials: CREDS }),
    TypeError,
  );
});

test("the package root exports the signers", () => {
  assert.equal(root.signRequest, signRequest);
  assert.equal(root.presignUrl, presignUrl);
});
