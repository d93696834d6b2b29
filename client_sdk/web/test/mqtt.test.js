// The MQTT 5 codec (src/mqtt.js): the bytes of each encoder for known inputs (worked out by
// hand from the MQTT 5 specification), decoding of hand-built server packets, the rejections,
// streaming whatever the chunking, and seeded property and fuzz tests (TIDINGS_FUZZ_SCALE
// scales their case count, 1 by default). tests/e2e/test_web_mqtt_codec.py checks the codec
// against the local broker's Python codec through test/mqtt-cli.mjs.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  MqttProtocolError,
  PacketReader,
  encodeConnect,
  encodeDisconnect,
  encodePingreq,
  encodePuback,
  encodePublish,
  encodeSubscribe,
  encodeUnsubscribe,
} from "../src/mqtt.js";

const SCALE = Number(process.env.TIDINGS_FUZZ_SCALE ?? 1);
const text = new TextEncoder();

/** @param {string} hex bytes in hex, spaces allowed */
const bytes = (hex) => Uint8Array.from(hex.replace(/\s+/g, "").match(/../g) ?? [], (h) => parseInt(h, 16));
/** @param {Uint8Array} data */
const hexOf = (data) => Buffer.from(data).toString("hex");

// Building server packets, with their lengths computed.
/** @param {number} n @returns {number[]} */
function vbi(n) {
  const out = [];
  do {
    out.push((n > 127 ? 0x80 : 0) | (n & 0x7f));
    n >>>= 7;
  } while (n);
  return out;
}
/** @param {number} n */
const u16 = (n) => [n >> 8, n & 0xff];
/** @param {number} n */
const u32 = (n) => [n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
/** @param {string | Uint8Array} s */
const str = (s) => {
  const b = typeof s === "string" ? text.encode(s) : s;
  return [...u16(b.length), ...b];
};
/** @param {...(number | number[])} parts */
const props = (...parts) => {
  const body = parts.flat();
  return [...vbi(body.length), ...body];
};
/** @param {number} first @param {...(number | number[] | Uint8Array)} parts */
function packet(first, ...parts) {
  const body = parts.flatMap((part) => (part instanceof Uint8Array ? [...part] : part));
  return Uint8Array.from([first, ...vbi(body.length), ...body]);
}

/** @param {Uint8Array} data @param {{ maxPacketSize?: number }} [options] */
const decode = (data, options) => new PacketReader(options).push(data);

/**
 * Assert decoding `data` throws an MqttProtocolError with `reasonCode` (and `pattern`).
 * @param {Uint8Array} data @param {number} reasonCode @param {RegExp} [pattern]
 */
function rejects(data, reasonCode, pattern) {
  assert.throws(
    () => decode(data),
    (error) => {
      assert.ok(error instanceof MqttProtocolError, `${error}`);
      assert.equal(error.reasonCode, reasonCode, error.message);
      if (pattern) assert.match(error.message, pattern);
      return true;
    },
  );
}

/** A deterministic PRNG (mulberry32): the same cases on every run. @param {number} seed */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Split `data` into random chunks. @param {Uint8Array} data @param {() => number} random */
function randomSplits(data, random) {
  const chunks = [];
  let at = 0;
  while (at < data.length) {
    const size = 1 + Math.floor(random() * Math.min(data.length - at, random() < 0.5 ? 8 : 4096));
    chunks.push(data.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

/** @param {Iterable<Uint8Array>} chunks @param {{ maxPacketSize?: number }} [options] */
function decodeChunks(chunks, options) {
  const reader = new PacketReader(options);
  return [...chunks].flatMap((chunk) => reader.push(chunk));
}

/** @param {Uint8Array[]} packets */
const concat = (packets) => Uint8Array.from(packets.flatMap((p) => [...p]));

describe("encoders write the bytes MQTT 5 defines", () => {
  test("CONNECT: protocol MQTT level 5, clean start, keep-alive, no properties, client id", () => {
    assert.equal(
      hexOf(encodeConnect({ clientId: "abc", keepAlive: 60 })),
      "1010" + "00044d515454" + "05" + "02" + "003c" + "00" + "0003616263",
    );
  });

  test("CONNECT with every option: properties in order, then user name and password", () => {
    const connect = encodeConnect({
      clientId: "c",
      keepAlive: 1200,
      cleanStart: false,
      sessionExpiryInterval: 3600,
      receiveMaximum: 10,
      maximumPacketSize: 131072,
      username: "u",
      password: "p",
    });
    const expected =
      "1021 00044d515454 05 c0 04b0" +
      "0d 11 00000e10 21 000a 27 00020000" +
      "000163 000175 000170";
    assert.equal(hexOf(connect), expected.replace(/\s+/g, ""));
  });

  test("CONNECT: a password without a user name, as bytes; an empty client id", () => {
    const connect = encodeConnect({ clientId: "", keepAlive: 0, password: Uint8Array.of(0, 255) });
    assert.equal(hexOf(connect), "1011" + "00044d515454" + "05" + "42" + "0000" + "00" + "0000" + "000200ff");
  });

  test("SUBSCRIBE: fixed header 0x82, packet id, empty properties, filter and options", () => {
    assert.equal(hexOf(encodeSubscribe(1, [{ topicFilter: "a/+", qos: 1 }])), "82090001000003612f2b01");
    assert.equal(
      hexOf(encodeSubscribe(0xabcd, [{ topicFilter: "x", qos: 0 }, { topicFilter: "#", qos: 1 }])),
      "820babcd00" + "00017800" + "00012301",
    );
  });

  test("UNSUBSCRIBE: fixed header 0xA2", () => {
    assert.equal(hexOf(encodeUnsubscribe(2, ["a/#"])), "a2080002000003612f23");
    assert.equal(hexOf(encodeUnsubscribe(3, ["a", "b"])), "a209000300" + "000161" + "000162");
  });

  test("PUBLISH: flags, topic, packet id for QoS 1, empty properties, payload", () => {
    const retained = encodePublish({ topic: "a/b", payload: Uint8Array.of(1, 2, 3), retain: true });
    assert.equal(hexOf(retained), "3109" + "0003612f62" + "00" + "010203");
    const dup = encodePublish({ topic: "t", payload: "hi", qos: 1, packetId: 10, dup: true });
    assert.equal(hexOf(dup), "3a08" + "000174" + "000a" + "00" + "6869");
    const empty = encodePublish({ topic: "é", payload: "", qos: 0, packetId: 99 });
    assert.equal(hexOf(empty), "3005" + "0002c3a9" + "00", "QoS 0 ignores the packet id");
  });

  test("PUBLISH: the remaining length as a variable byte integer at each size boundary", () => {
    // The body is 2 + 1 (topic "t") + 1 (properties) + the payload.
    for (const [remaining, header] of [
      [127, "307f"],
      [128, "308001"],
      [16383, "30ff7f"],
      [16384, "30808001"],
      [2097151, "30ffff7f"],
      [2097152, "3080808001"],
    ]) {
      const publish = encodePublish({ topic: "t", payload: new Uint8Array(Number(remaining) - 4) });
      assert.equal(hexOf(publish.subarray(0, String(header).length / 2)), header);
      assert.equal(publish.length, String(header).length / 2 + Number(remaining));
    }
  });

  test("PUBACK: the short form for success, the reason code otherwise", () => {
    assert.equal(hexOf(encodePuback(0x1234)), "40021234");
    assert.equal(hexOf(encodePuback(7, 0x10)), "4003000710");
  });

  test("PINGREQ and DISCONNECT", () => {
    assert.equal(hexOf(encodePingreq()), "c000");
    assert.equal(hexOf(encodeDisconnect()), "e000");
    assert.equal(hexOf(encodeDisconnect(0x04)), "e00104");
  });
});

describe("encoders refuse what cannot go on the wire", () => {
  const big = "x".repeat(65536);
  for (const [name, call, type, pattern] of /** @type {const} */ ([
    ["client id too long", () => encodeConnect({ clientId: big, keepAlive: 60 }), RangeError, /clientId is 65536 bytes/],
    ["client id not a string", () => encodeConnect({ clientId: /** @type {any} */ (7), keepAlive: 60 }), TypeError, /clientId must be a string/],
    ["keep-alive out of range", () => encodeConnect({ clientId: "c", keepAlive: 65536 }), RangeError, /keepAlive is 65536/],
    ["keep-alive not an integer", () => encodeConnect({ clientId: "c", keepAlive: 1.5 }), TypeError, /keepAlive must be an integer/],
    ["receive maximum 0", () => encodeConnect({ clientId: "c", keepAlive: 1, receiveMaximum: 0 }), RangeError, /receiveMaximum/],
    ["session expiry too large", () => encodeConnect({ clientId: "c", keepAlive: 1, sessionExpiryInterval: 2 ** 32 }), RangeError, /sessionExpiryInterval/],
    ["password too long", () => encodeConnect({ clientId: "c", keepAlive: 1, password: new Uint8Array(65536) }), RangeError, /password/],
    ["packet id 0", () => encodeSubscribe(0, [{ topicFilter: "a", qos: 0 }]), RangeError, /packetId is 0; it must be 1 to 65535/],
    ["packet id 65536", () => encodeUnsubscribe(65536, ["a"]), RangeError, /packetId is 65536/],
    ["no subscription", () => encodeSubscribe(1, []), TypeError, /non-empty array/],
    ["QoS 2", () => encodeSubscribe(1, [{ topicFilter: "a", qos: /** @type {any} */ (2) }]), RangeError, /qos is 2/],
    ["# not last", () => encodeSubscribe(1, [{ topicFilter: "a/#/b", qos: 0 }]), RangeError, /# must be the whole last level/],
    ["+ inside a level", () => encodeUnsubscribe(1, ["a/b+"]), RangeError, /\+ must fill a whole level/],
    ["empty filter", () => encodeUnsubscribe(1, [""]), RangeError, /non-empty/],
    ["topic with +", () => encodePublish({ topic: "a/+", payload: "" }), RangeError, /free of \+ and #/],
    ["empty topic", () => encodePublish({ topic: "", payload: "" }), RangeError, /non-empty/],
    ["topic with U+0000", () => encodePublish({ topic: "a\0b", payload: "" }), RangeError, /U\+0000/],
    ["topic with a lone surrogate", () => encodePublish({ topic: "a\ud800", payload: "" }), RangeError, /surrogate/],
    ["topic with a lone low surrogate", () => encodePublish({ topic: "\udc00a", payload: "" }), RangeError, /surrogate/],
    ["topic too long", () => encodePublish({ topic: "é".repeat(32768), payload: "" }), RangeError, /65536 bytes/],
    ["QoS 1 without packet id", () => encodePublish({ topic: "t", payload: "", qos: 1 }), TypeError, /packetId must be an integer/],
    ["QoS 3", () => encodePublish({ topic: "t", payload: "", qos: /** @type {any} */ (3) }), RangeError, /qos is 3/],
    ["DUP on QoS 0", () => encodePublish({ topic: "t", payload: "", dup: true }), RangeError, /QoS 0/],
    ["payload of another type", () => encodePublish({ topic: "t", payload: /** @type {any} */ ([1]) }), TypeError, /payload/],
    ["PUBACK reason code 256", () => encodePuback(1, 256), RangeError, /reasonCode is 256/],
    ["DISCONNECT reason code -1", () => encodeDisconnect(-1), RangeError, /reasonCode is -1/],
  ])) {
    test(name, () => assert.throws(call, (error) => error instanceof type && pattern.test(String(error.message))));
  }

  test("a well-formed surrogate pair is fine", () => {
    assert.equal(hexOf(encodePublish({ topic: "😀", payload: "" })), "3007" + "0004f09f9880" + "00");
  });
});

describe("decoding what a server sends", () => {
  test("CONNACK with and without session, and with the 3.1.1 form a non-MQTT 5 server sends", () => {
    assert.deepEqual(decode(bytes("2003 01 00 00")), [
      { type: "connack", sessionPresent: true, reasonCode: 0, properties: {} },
    ]);
    assert.deepEqual(decode(bytes("2003 00 87 00")), [
      { type: "connack", sessionPresent: false, reasonCode: 0x87, properties: {} },
    ]);
    assert.deepEqual(decode(bytes("2002 00 01")), [
      { type: "connack", sessionPresent: false, reasonCode: 1, properties: {} },
    ]);
  });

  test("CONNACK with the properties AWS IoT sends, and more", () => {
    const connack = packet(
      0x20,
      [0, 0],
      props(
        [0x21, ...u16(100)],
        [0x24, 1],
        [0x25, 1],
        [0x27, ...u32(149504)],
        [0x12, ...str("assigned-1")],
        [0x13, ...u16(1200)],
        [0x22, ...u16(8)],
        [0x28, 1, 0x29, 1, 0x2a, 0],
        [0x11, ...u32(3600)],
        [0x1f, ...str("welcome ✓")],
        [0x1a, ...str("resp/")],
        [0x1c, ...str("other.example")],
        [0x15, ...str("SCRAM")],
        [0x16, ...str(Uint8Array.of(0, 1, 2))],
        [0x26, ...str("k"), ...str("v1")],
        [0x26, ...str("k"), ...str("v2")],
      ),
    );
    assert.deepEqual(decode(connack), [
      {
        type: "connack",
        sessionPresent: false,
        reasonCode: 0,
        properties: {
          receiveMaximum: 100,
          maximumQos: 1,
          retainAvailable: 1,
          maximumPacketSize: 149504,
          assignedClientIdentifier: "assigned-1",
          serverKeepAlive: 1200,
          topicAliasMaximum: 8,
          wildcardSubscriptionAvailable: 1,
          subscriptionIdentifiersAvailable: 1,
          sharedSubscriptionAvailable: 0,
          sessionExpiryInterval: 3600,
          reasonString: "welcome ✓",
          responseInformation: "resp/",
          serverReference: "other.example",
          authenticationMethod: "SCRAM",
          authenticationData: Uint8Array.of(0, 1, 2),
          userProperties: [
            ["k", "v1"],
            ["k", "v2"],
          ],
        },
      },
    ]);
  });

  test("PUBLISH with every message property; Subscription Identifier repeats", () => {
    const publish = packet(
      0x3b, // DUP, QoS 1, RETAIN
      str("orders/42/é"),
      u16(7),
      props(
        [0x01, 1],
        [0x02, ...u32(0xffffffff)],
        [0x03, ...str("application/json")],
        [0x08, ...str("reply/to")],
        [0x09, ...str(Uint8Array.of(9, 8))],
        [0x0b, 1, 0x0b, 0xac, 0x02],
        [0x23, ...u16(3)],
        [0x26, ...str(""), ...str("")],
      ),
      text.encode('{"seq":1}'),
    );
    assert.deepEqual(decode(publish), [
      {
        type: "publish",
        topic: "orders/42/é",
        payload: text.encode('{"seq":1}'),
        qos: 1,
        packetId: 7,
        dup: true,
        retain: true,
        properties: {
          payloadFormatIndicator: 1,
          messageExpiryInterval: 0xffffffff,
          contentType: "application/json",
          responseTopic: "reply/to",
          correlationData: Uint8Array.of(9, 8),
          subscriptionIdentifier: [1, 300],
          topicAlias: 3,
          userProperties: [["", ""]],
        },
      },
    ]);
  });

  test("PUBLISH at QoS 0 has no packet id; QoS 2 decodes; a topic alias may stand for the topic", () => {
    const [qos0] = decode(packet(0x30, str("a"), [0], [1, 2]));
    assert.deepEqual(qos0, { type: "publish", topic: "a", payload: Uint8Array.of(1, 2), qos: 0, dup: false, retain: false, properties: {} });
    assert.ok(!("packetId" in qos0));
    const [qos2] = decode(packet(0x34, str("a"), u16(1), [0]));
    assert.equal(qos2.type === "publish" && qos2.qos, 2);
    const [aliased] = decode(packet(0x30, str(""), props([0x23, 0, 1])));
    assert.equal(aliased.type === "publish" && aliased.properties.topicAlias, 1);
  });

  test("a leading U+FEFF in a topic is kept, as MQTT requires", () => {
    const [publish] = decode(packet(0x30, str("\ufeffa"), [0]));
    assert.equal(publish.type === "publish" && publish.topic, "\ufeffa");
  });

  test("the payload is a copy: reusing the received buffer does not change it", () => {
    const data = packet(0x30, str("a"), [0], [1, 2, 3]);
    const [publish] = decode(data);
    data.fill(0);
    assert.deepEqual(publish.type === "publish" && publish.payload, Uint8Array.of(1, 2, 3));
  });

  test("PUBACK: short form, with a reason code, with properties", () => {
    assert.deepEqual(decode(bytes("4002 0005")), [{ type: "puback", packetId: 5, reasonCode: 0, properties: {} }]);
    assert.deepEqual(decode(bytes("4003 0005 10")), [{ type: "puback", packetId: 5, reasonCode: 0x10, properties: {} }]);
    assert.deepEqual(decode(packet(0x40, u16(5), [0x80], props([0x1f, ...str("no")]))), [
      { type: "puback", packetId: 5, reasonCode: 0x80, properties: { reasonString: "no" } },
    ]);
  });

  test("SUBACK and UNSUBACK: one reason code per filter", () => {
    assert.deepEqual(decode(bytes("9005 0001 00 00 01")), [
      { type: "suback", packetId: 1, reasonCodes: [0, 1], properties: {} },
    ]);
    assert.deepEqual(decode(packet(0x90, u16(9), props([0x1f, ...str("denied")]), [0x87])), [
      { type: "suback", packetId: 9, reasonCodes: [0x87], properties: { reasonString: "denied" } },
    ]);
    assert.deepEqual(decode(bytes("b004 0002 00 11")), [
      { type: "unsuback", packetId: 2, reasonCodes: [0x11], properties: {} },
    ]);
  });

  test("PINGRESP and DISCONNECT (empty is 0 Normal disconnection)", () => {
    assert.deepEqual(decode(bytes("d000")), [{ type: "pingresp" }]);
    assert.deepEqual(decode(bytes("e000")), [{ type: "disconnect", reasonCode: 0, properties: {} }]);
    assert.deepEqual(decode(bytes("e001 8e")), [{ type: "disconnect", reasonCode: 0x8e, properties: {} }]);
    assert.deepEqual(
      decode(packet(0xe0, [0x9c], props([0x1c, ...str("b.example")], [0x1f, ...str("moved")], [0x11, ...u32(0)]))),
      [
        {
          type: "disconnect",
          reasonCode: 0x9c,
          properties: { serverReference: "b.example", reasonString: "moved", sessionExpiryInterval: 0 },
        },
      ],
    );
  });
});

describe("decoding refuses what a server must not send", () => {
  const cases = /** @type {const} */ ([
    ["CONNECT arriving at the client", "1000", 0x82, /CONNECT: a server never sends/],
    ["SUBSCRIBE arriving at the client", "8205 0001 00 0001", 0x82, /SUBSCRIBE/],
    ["PINGREQ", "c000", 0x82, /PINGREQ/],
    ["PUBREL (QoS 2)", "6202 0001", 0x82, /PUBREL/],
    ["AUTH", "f000", 0x82, /AUTH/],
    ["packet type 0", "0000", 0x81, /reserved/],
    ["CONNACK with fixed-header flags", "2103 00 00 00", 0x81, /flags are 0b0001/],
    ["PINGRESP with fixed-header flags", "d800", 0x81, /flags/],
    ["a remaining length of 5 bytes", "30 ff ff ff ff 7f", 0x81, /more than 4 bytes/],
    ["PINGRESP with a body", "d001 00", 0x81, /1 unexpected byte/],
    ["CONNACK cut short", "2001 00", 0x81, /reason code runs past the end/],
    ["PUBACK with a byte after its properties", "4005 0001 00 00 00", 0x81, /unexpected byte/],
    ["CONNACK with reserved acknowledge flags", "2003 02 00 00", 0x81, /reserved bits/],
    ["a property length past the end", "2003 00 00 05", 0x81, /property length \(5\) runs past/],
    ["a property running past the property length", "2006 00 00 02 21 00 01", 0x81, /receiveMaximum.*past the end of the properties/],
    ["an unknown property", "2005 00 00 02 05 00", 0x81, /0x05 is not an MQTT 5 property/],
    ["a property not allowed in the packet", "2006 00 00 03 23 00 01", 0x81, /topicAlias \(0x23\) is not allowed in CONNACK/],
    ["a will property", "2008 00 00 05 18 00 00 00 01", 0x81, /willDelayInterval/],
    ["a property appearing twice", "2009 00 00 06 21 00 01 21 00 02", 0x82, /receiveMaximum \(0x21\) appears more than once/],
    ["Maximum QoS 2", "2005 00 00 02 24 02", 0x82, /maximumQos \(0x24\) is 2/],
    ["Receive Maximum 0", "2006 00 00 03 21 00 00", 0x82, /receiveMaximum \(0x21\) is 0/],
    ["Subscription Identifier 0", "3006 0001 61 02 0b 00", 0x82, /subscriptionIdentifier/],
    ["a property id of 5 bytes", "2009 00 00 06 ff ff ff ff 7f 00", 0x81, /property identifier uses more than 4 bytes/],
    ["a topic that is not UTF-8", "3004 0001 ff 00", 0x81, /topic name is not well-formed UTF-8/],
    ["an overlong UTF-8 NUL", "3005 0002 c0 80 00", 0x81, /not well-formed UTF-8/],
    ["a UTF-8 encoded surrogate", "3006 0003 ed a0 80 00", 0x81, /not well-formed UTF-8/],
    ["a topic with U+0000", "3004 0001 00 00", 0x81, /U\+0000/],
    ["a reason string with U+0000", "2007 00 00 04 1f 0001 00", 0x81, /reasonString.*U\+0000/],
    ["a user property that is not UTF-8", "200a 00 00 07 26 0001 61 0001 ff", 0x81, /userProperties \(0x26\) value is not well-formed/],
    ["PUBLISH at QoS 3", "3604 0001 61 00", 0x81, /QoS 3/],
    ["PUBLISH at QoS 1 without packet id", "3203 0001 61", 0x81, /packet identifier runs past the end/],
    ["PUBLISH at QoS 1 with packet id 0", "3206 0001 61 0000 00", 0x82, /packet identifier is 0/],
    ["PUBLISH without properties", "3003 0001 61", 0x81, /property length runs past/],
    ["PUBLISH with a + in the topic", "3006 0003 612f2b 00", 0x90, /wildcard/],
    ["PUBLISH with a # in the topic", "3004 0001 23 00", 0x90, /wildcard/],
    ["PUBLISH with an empty topic and no alias", "3003 0000 00", 0x82, /topic name is empty/],
    ["DUP on a QoS 0 PUBLISH", "3804 0001 61 00", 0x82, /DUP/],
    ["DUP on a retained QoS 0 PUBLISH", "3904 0001 61 00", 0x82, /DUP/],
    ["SUBACK without reason codes", "9003 0001 00", 0x81, /no reason code/],
    ["UNSUBACK without reason codes", "b003 0001 00", 0x81, /no reason code/],
    ["SUBACK with packet id 0", "9004 0000 00 00", 0x82, /packet identifier is 0/],
  ]);
  for (const [name, hex, reasonCode, pattern] of cases) {
    test(name, () => rejects(bytes(hex), reasonCode, pattern));
  }

  test("the error names the packet type and the reason code", () => {
    const error = new MqttProtocolError("boom");
    assert.equal(error.reasonCode, 0x81);
    assert.equal(error.name, "MqttProtocolError");
    assert.ok(error instanceof Error);
  });

  test("packets before the bad one are decoded; the reader then stays failed", () => {
    const reader = new PacketReader();
    assert.deepEqual(reader.push(bytes("d000")), [{ type: "pingresp" }]);
    assert.throws(() => reader.push(bytes("d000 1000")), MqttProtocolError);
    assert.throws(() => reader.push(bytes("d000")), /CONNECT: a server never sends/);
  });
});

describe("the packet size limit", () => {
  test("a packet over the limit is refused from its fixed header, before its body", () => {
    const reader = new PacketReader({ maxPacketSize: 100 });
    assert.deepEqual(reader.push(bytes("30")), []);
    assert.throws(
      () => reader.push(bytes("63")), // remaining length 99: 101 bytes in all
      (error) => error instanceof MqttProtocolError && error.reasonCode === 0x95 && /101 bytes; the limit is 100/.test(error.message),
    );
  });

  test("a packet exactly at the limit is fine", () => {
    const publish = encodePublish({ topic: "t", payload: new Uint8Array(94) });
    assert.equal(publish.length, 100);
    assert.equal(decodeChunks([publish], { maxPacketSize: 100 }).length, 1);
    assert.throws(() => decodeChunks([publish], { maxPacketSize: 99 }), /PUBLISH: the packet is 100 bytes/);
  });

  test("the limit must be at least 2 bytes", () => {
    assert.throws(() => new PacketReader({ maxPacketSize: 1 }), RangeError);
    assert.equal(new PacketReader().maxPacketSize, 268435455);
  });
});

// A stream of every packet kind a server sends, a large PUBLISH among them.
const STREAM = [
  bytes("2003 00 00 00"),
  packet(0x20, [1, 0], props([0x21, 0, 5], [0x26, ...str("a"), ...str("b")])),
  bytes("9005 0001 00 00 01"),
  encodePublish({ topic: "t/1", payload: "hello" }),
  encodePublish({ topic: "t/2", payload: new Uint8Array(20000).fill(7), qos: 1, packetId: 65535 }),
  packet(0x32, str("t/3"), u16(2), props([0x0b, 0xff, 0x7f], [0x09, ...str(Uint8Array.of(1))]), [4, 5]),
  bytes("4002 0009"),
  bytes("4003 0009 10"),
  bytes("b004 0002 00 11"),
  bytes("d000"),
  bytes("e000"),
  packet(0xe0, [0x8e], props([0x1f, ...str("bye")])),
];

describe("streaming: the chunking does not matter", () => {
  const whole = concat(STREAM);
  const expected = STREAM.flatMap((p) => decode(p));

  test("all at once", () => {
    assert.equal(expected.length, STREAM.length);
    assert.deepEqual(decode(whole), expected);
  });

  test("byte by byte", () => {
    const reader = new PacketReader();
    const got = [];
    for (let i = 0; i < whole.length; i++) got.push(...reader.push(whole.subarray(i, i + 1)));
    assert.deepEqual(got, expected);
  });

  test("in random splits, and with empty chunks", () => {
    const random = mulberry32(7);
    for (let run = 0; run < 50 * SCALE; run++) {
      const chunks = randomSplits(whole, random);
      chunks.splice(Math.floor(random() * chunks.length), 0, new Uint8Array(0));
      assert.deepEqual(decodeChunks(chunks), expected);
    }
  });

  test("a partial packet is kept until the rest arrives", () => {
    const reader = new PacketReader();
    assert.deepEqual(reader.push(bytes("2003 00")), []);
    assert.deepEqual(reader.push(bytes("00 00 d0")), [{ type: "connack", sessionPresent: false, reasonCode: 0, properties: {} }]);
    assert.deepEqual(reader.push(bytes("00")), [{ type: "pingresp" }]);
  });
});

// Random topics: levels of letters, accented, CJK and astral characters, a BOM, empty levels.
const ALPHABET = ["a", "b", "z", "0", "-", "_", " ", "é", "ß", "ж", "中", "文", "😀", "🚀", "\ufeff", "\uffff", "$", "\u0001", "\u007f"];

/** @param {() => number} random */
function randomTopic(random) {
  const levels = [];
  const count = 1 + Math.floor(random() * 5);
  for (let i = 0; i < count; i++) {
    let level = "";
    const size = Math.floor(random() * 8);
    for (let j = 0; j < size; j++) level += ALPHABET[Math.floor(random() * ALPHABET.length)];
    levels.push(level);
  }
  const topic = levels.join("/");
  return topic || "x";
}

/** @param {() => number} random */
function randomPayload(random) {
  const roll = random();
  const size = roll < 0.1 ? 0 : roll < 0.8 ? Math.floor(random() * 200) : Math.floor(random() * 70001);
  const payload = new Uint8Array(size);
  for (let i = 0; i < size; i++) payload[i] = (random() * 256) | 0;
  return payload;
}

describe("property tests (seeded)", () => {
  test("random valid publishes round-trip through the reader, in random splits", () => {
    const random = mulberry32(2024);
    for (let run = 0; run < 800 * SCALE; run++) {
      const qos = random() < 0.5 ? 0 : 1;
      const options = {
        topic: randomTopic(random),
        payload: randomPayload(random),
        qos: /** @type {0 | 1} */ (qos),
        packetId: 1 + Math.floor(random() * 65535),
        retain: random() < 0.3,
        dup: qos === 1 && random() < 0.3,
      };
      const data = encodePublish(options);
      const [publish, ...rest] = decodeChunks(randomSplits(data, random));
      assert.equal(rest.length, 0);
      /** @type {Record<string, unknown>} */
      const expected = { type: "publish", topic: options.topic, payload: options.payload, qos, dup: options.dup, retain: options.retain, properties: {} };
      if (qos) expected.packetId = options.packetId;
      assert.deepEqual(publish, expected);
    }
  });

  test("mutated and truncated packets either decode or throw MqttProtocolError, never anything else", () => {
    const random = mulberry32(99);
    const corpus = [...STREAM.filter((p) => p.length < 1000), encodePublish({ topic: "é/😀", payload: "x", qos: 1, packetId: 3 })];
    const types = new Set(["connack", "publish", "puback", "suback", "unsuback", "pingresp", "disconnect"]);
    let decoded = 0;
    let refused = 0;
    const started = Date.now();
    for (let run = 0; run < 1200 * SCALE; run++) {
      const original = corpus[Math.floor(random() * corpus.length)];
      let data = Uint8Array.from(original);
      const how = random();
      if (how < 0.5) {
        const flips = 1 + Math.floor(random() * 3);
        for (let i = 0; i < flips; i++) data[Math.floor(random() * data.length)] = (random() * 256) | 0;
      } else if (how < 0.7) {
        data = data.subarray(0, Math.floor(random() * data.length));
      } else if (how < 0.85) {
        const at = Math.floor(random() * data.length);
        data = concat([data.subarray(0, at), Uint8Array.of((random() * 256) | 0), data.subarray(at)]);
      } else {
        const at = Math.floor(random() * data.length);
        data = concat([data.subarray(0, at), data.subarray(at + 1)]);
      }
      const stream = concat([data, concat(corpus.slice(0, 2))]);
      try {
        const packets = decodeChunks(randomSplits(stream, random), { maxPacketSize: 4096 });
        for (const p of packets) assert.ok(types.has(p.type), `decoded an unknown type ${p.type}`);
        decoded += 1;
      } catch (error) {
        if (!(error instanceof MqttProtocolError)) {
          assert.fail(`${hexOf(stream)} threw ${error}`);
        }
        assert.ok([0x81, 0x82, 0x90, 0x95].includes(error.reasonCode), `reason code ${error.reasonCode}`);
        refused += 1;
      }
    }
    assert.ok(decoded > 0 && refused > 0, `decoded ${decoded}, refused ${refused}`);
    assert.ok(Date.now() - started < 10000 * SCALE, "the fuzz run took too long");
  });

  test("random bytes either decode or throw MqttProtocolError", () => {
    const random = mulberry32(5);
    for (let run = 0; run < 300 * SCALE; run++) {
      const data = Uint8Array.from({ length: Math.floor(random() * 64) }, () => (random() * 256) | 0);
      try {
        decodeChunks(randomSplits(data, random), { maxPacketSize: 1024 });
      } catch (error) {
        if (!(error instanceof MqttProtocolError)) assert.fail(`${hexOf(data)} threw ${error}`);
      }
    }
  });

  test("an announced oversized packet is refused before any of its body arrives", () => {
    const random = mulberry32(11);
    for (let run = 0; run < 100 * SCALE; run++) {
      const limit = 2 + Math.floor(random() * 100000);
      const data = encodePublish({ topic: "t", payload: new Uint8Array(limit) });
      const header = data.subarray(0, data.length - limit - 4);
      const reader = new PacketReader({ maxPacketSize: limit });
      assert.throws(() => reader.push(header), (error) => error instanceof MqttProtocolError && error.reasonCode === 0x95);
    }
  });
});
