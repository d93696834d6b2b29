/**
 * MQTT 5 for the client side of a connection, with no I/O: encode what a client sends
 * (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PUBACK, PINGREQ, DISCONNECT) and decode what a
 * server sends (CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP, DISCONNECT) with a
 * {@link PacketReader}, whatever the chunking of the byte stream.
 *
 * The reader checks everything the wire format defines — lengths, fixed-header flags,
 * well-formed UTF-8, which properties may appear in which packet and how often — and reports a
 * violation as {@link MqttProtocolError}, carrying the reason code to put in the DISCONNECT
 * before closing. The encoders refuse what cannot go on the wire with a `TypeError` (a value of
 * the wrong type) or a `RangeError` (a value out of range).
 *
 * QoS 2, topic aliases sent by the client, wills and enhanced authentication are left out: the
 * web client does not use them. The rules are those of the local broker's codec
 * (`infra/local/iot/mqtt_codec`); `tests/e2e/test_web_mqtt_codec.py` checks the two agree.
 *
 * Only standard JavaScript (`Uint8Array`, `TextEncoder`, `TextDecoder`): it runs unchanged in
 * browsers, Node and React Native.
 *
 * @module
 */

/**
 * MQTT 5 properties of a received packet, by name; only those on the wire are present.
 * Byte-sized flags (`retainAvailable`, `maximumQos`…) keep their wire value, 0 or 1.
 *
 * @typedef {object} Properties
 * @property {number} [payloadFormatIndicator]
 * @property {number} [messageExpiryInterval]
 * @property {string} [contentType]
 * @property {string} [responseTopic]
 * @property {Uint8Array} [correlationData]
 * @property {number[]} [subscriptionIdentifier] Every Subscription Identifier, in wire order.
 * @property {number} [sessionExpiryInterval]
 * @property {string} [assignedClientIdentifier]
 * @property {number} [serverKeepAlive]
 * @property {string} [authenticationMethod]
 * @property {Uint8Array} [authenticationData]
 * @property {number} [requestProblemInformation]
 * @property {number} [willDelayInterval]
 * @property {number} [requestResponseInformation]
 * @property {string} [responseInformation]
 * @property {string} [serverReference]
 * @property {string} [reasonString]
 * @property {number} [receiveMaximum]
 * @property {number} [topicAliasMaximum]
 * @property {number} [topicAlias]
 * @property {number} [maximumQos]
 * @property {number} [retainAvailable]
 * @property {Array<[string, string]>} [userProperties] Every User Property, in wire order.
 * @property {number} [maximumPacketSize]
 * @property {number} [wildcardSubscriptionAvailable]
 * @property {number} [subscriptionIdentifiersAvailable]
 * @property {number} [sharedSubscriptionAvailable]
 */

/**
 * @typedef {{ type: "connack", sessionPresent: boolean, reasonCode: number,
 *             properties: Properties }} Connack
 */
/**
 * `packetId` is present for QoS 1 and 2 only.
 * @typedef {{ type: "publish", topic: string, payload: Uint8Array, qos: 0 | 1 | 2,
 *             packetId?: number, dup: boolean, retain: boolean,
 *             properties: Properties }} Publish
 */
/**
 * @typedef {{ type: "puback", packetId: number, reasonCode: number,
 *             properties: Properties }} Puback
 */
/**
 * @typedef {{ type: "suback", packetId: number, reasonCodes: number[],
 *             properties: Properties }} Suback
 */
/**
 * @typedef {{ type: "unsuback", packetId: number, reasonCodes: number[],
 *             properties: Properties }} Unsuback
 */
/** @typedef {{ type: "pingresp" }} Pingresp */
/**
 * @typedef {{ type: "disconnect", reasonCode: number, properties: Properties }} Disconnect
 */
/**
 * A packet a server sends to a client.
 * @typedef {Connack | Publish | Puback | Suback | Unsuback | Pingresp | Disconnect} Packet
 */

/**
 * What {@link encodeConnect} puts in the CONNECT.
 * @typedef {object} ConnectOptions
 * @property {string} clientId The client identifier; `""` asks the server to assign one.
 * @property {number} keepAlive Seconds, 0 to 65535 (0 turns keep-alive off).
 * @property {boolean | undefined} [cleanStart] Start a new session; `true` by default.
 * @property {number | undefined} [sessionExpiryInterval] Seconds the session outlives the
 *   connection, 0 (the default, left off the wire) to 4294967295.
 * @property {number | undefined} [receiveMaximum] QoS 1 messages the client takes in flight at
 *   once, 1 to 65535.
 * @property {number | undefined} [maximumPacketSize] The largest packet the client accepts, in
 *   bytes, 1 to 4294967295.
 * @property {string | undefined} [username]
 * @property {Uint8Array | string | undefined} [password] Text is sent as UTF-8.
 */

/**
 * One entry of a SUBSCRIBE.
 * @typedef {{ topicFilter: string, qos: 0 | 1 }} Subscription
 */

/**
 * What {@link encodePublish} sends. `packetId` is required for QoS 1 and ignored for QoS 0;
 * `dup` marks the retransmission of a QoS 1 message.
 * @typedef {object} PublishOptions
 * @property {string} topic
 * @property {Uint8Array | string} payload Text is sent as UTF-8.
 * @property {0 | 1 | undefined} [qos]
 * @property {number | undefined} [packetId]
 * @property {boolean | undefined} [retain]
 * @property {boolean | undefined} [dup]
 */

const MALFORMED = 0x81;
const PROTOCOL_ERROR = 0x82;
const TOPIC_NAME_INVALID = 0x90;
const PACKET_TOO_LARGE = 0x95;
const MAX_REMAINING = 268435455;

/** MQTT packet types by number (the high nibble of a packet's first byte). */
const TYPES = [
  "reserved type 0", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
  "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
];

/**
 * The text codecs used here (the standard library types do not declare them).
 * @typedef {object} TextCodecs
 * @property {new () => { encode(text: string): Uint8Array }} TextEncoder
 * @property {new (label: string, options: { fatal: boolean, ignoreBOM: boolean }) =>
 *   { decode(bytes: Uint8Array): string }} TextDecoder
 */

const codecs = /** @type {TextCodecs} */ (/** @type {unknown} */ (globalThis));
/** @type {{ encode(text: string): Uint8Array } | undefined} */
let encoder;
/** @type {{ decode(bytes: Uint8Array): string } | undefined} */
let decoder;

/** @param {string} text */
const encodeText = (text) => (encoder ??= new codecs.TextEncoder()).encode(text);

/**
 * UTF-8 to text; throws a TypeError on malformed UTF-8 (surrogates and overlong forms
 * included). A leading U+FEFF is kept: MQTT says a receiver must not strip it.
 * @param {Uint8Array} bytes
 */
const decodeText = (bytes) =>
  (decoder ??= new codecs.TextDecoder("utf-8", { fatal: true, ignoreBOM: true })).decode(bytes);
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Received bytes that are not a valid MQTT 5 packet for a client; the connection cannot go
 * on. `reasonCode` is the reason to send in the DISCONNECT before closing: 0x81 Malformed
 * Packet, 0x82 Protocol Error, 0x90 Topic Name invalid or 0x95 Packet too large.
 */
export class MqttProtocolError extends Error {
  /**
   * @param {string} message What was wrong, in words a person can act on.
   * @param {number} [reasonCode] 0x81 Malformed Packet by default.
   */
  constructor(message, reasonCode = MALFORMED) {
    super(message);
    this.name = "MqttProtocolError";
    /** The MQTT 5 reason code to DISCONNECT with. */
    this.reasonCode = reasonCode;
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * Encode a CONNECT for MQTT 5 (protocol level 5). Properties are written only when given.
 * @param {ConnectOptions} options
 * @returns {Uint8Array}
 */
export function encodeConnect(options) {
  const { clientId, keepAlive, cleanStart = true, sessionExpiryInterval = 0 } = options;
  const { receiveMaximum, maximumPacketSize, username, password } = options;
  /** @type {number[]} */
  const props = [];
  if (uint(sessionExpiryInterval, 0, 0xffffffff, "sessionExpiryInterval")) {
    props.push(0x11, ...u32(sessionExpiryInterval));
  }
  if (receiveMaximum != null) {
    props.push(0x21, ...u16(uint(receiveMaximum, 1, 0xffff, "receiveMaximum")));
  }
  if (maximumPacketSize != null) {
    props.push(0x27, ...u32(uint(maximumPacketSize, 1, 0xffffffff, "maximumPacketSize")));
  }
  let flags = cleanStart ? 0x02 : 0;
  /** @type {Array<number[] | Uint8Array>} */
  const parts = [
    [0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 0], // "MQTT", level 5, flags (set below)
    u16(uint(keepAlive, 0, 0xffff, "keepAlive")),
    varint(props.length),
    props,
    utf8(clientId, "clientId"),
  ];
  if (username != null) {
    flags |= 0x80;
    parts.push(utf8(username, "username"));
  }
  if (password != null) {
    flags |= 0x40;
    parts.push(binary(password, "password"));
  }
  parts[0][7] = flags;
  return frame(0x10, parts);
}

/**
 * Encode a SUBSCRIBE of one or more topic filters, each at QoS 0 or 1.
 * @param {number} packetId 1 to 65535.
 * @param {readonly Subscription[]} subscriptions
 * @returns {Uint8Array}
 */
export function encodeSubscribe(packetId, subscriptions) {
  /** @type {Array<number[] | Uint8Array>} */
  const parts = [u16(id(packetId)), [0]];
  for (const { topicFilter, qos } of nonEmpty(subscriptions, "subscriptions")) {
    parts.push(topicFilterBytes(topicFilter), [qosOf(qos)]);
  }
  return frame(0x82, parts);
}

/**
 * Encode an UNSUBSCRIBE of one or more topic filters.
 * @param {number} packetId 1 to 65535.
 * @param {readonly string[]} topicFilters
 * @returns {Uint8Array}
 */
export function encodeUnsubscribe(packetId, topicFilters) {
  /** @type {Array<number[] | Uint8Array>} */
  const parts = [u16(id(packetId)), [0]];
  for (const topicFilter of nonEmpty(topicFilters, "topicFilters")) {
    parts.push(topicFilterBytes(topicFilter));
  }
  return frame(0xa2, parts);
}

/**
 * Encode a PUBLISH at QoS 0 or 1, without properties.
 * @param {PublishOptions} options
 * @returns {Uint8Array}
 */
export function encodePublish({ topic, payload, qos = 0, packetId, retain = false, dup = false }) {
  const topicBytes = utf8(topic, "topic");
  if (!topic || /[+#]/.test(topic)) {
    throw new RangeError(`topic ${JSON.stringify(topic)} must be non-empty and free of + and #`);
  }
  const level = qosOf(qos);
  if (dup && !level) throw new RangeError("dup marks a QoS 1 retransmission; QoS 0 has none");
  const body = typeof payload === "string" ? encodeText(payload) : payload;
  if (!(body instanceof Uint8Array)) throw new TypeError("payload must be a Uint8Array or a string");
  const first = 0x30 | (dup ? 8 : 0) | (level << 1) | (retain ? 1 : 0);
  return frame(first, [topicBytes, level ? u16(id(packetId)) : [], [0], body]);
}

/**
 * Encode a PUBACK; the short form (no reason code) for 0 Success.
 * @param {number} packetId 1 to 65535.
 * @param {number} [reasonCode] 0 to 255.
 * @returns {Uint8Array}
 */
export function encodePuback(packetId, reasonCode = 0) {
  const code = uint(reasonCode, 0, 0xff, "reasonCode");
  return frame(0x40, [u16(id(packetId)), code ? [code] : []]);
}

/**
 * Encode a PINGREQ.
 * @returns {Uint8Array}
 */
export function encodePingreq() {
  return Uint8Array.of(0xc0, 0);
}

/**
 * Encode a DISCONNECT; empty for 0 Normal disconnection.
 * @param {number} [reasonCode] 0 to 255.
 * @returns {Uint8Array}
 */
export function encodeDisconnect(reasonCode = 0) {
  const code = uint(reasonCode, 0, 0xff, "reasonCode");
  return code ? Uint8Array.of(0xe0, 1, code) : Uint8Array.of(0xe0, 0);
}

/**
 * A fixed header and its body, concatenated.
 * @param {number} first
 * @param {Array<ArrayLike<number>>} parts
 */
function frame(first, parts) {
  let size = 0;
  for (const part of parts) size += part.length;
  if (size > MAX_REMAINING) {
    throw new RangeError(`the packet body is ${size} bytes; MQTT allows at most ${MAX_REMAINING}`);
  }
  const head = [first, ...varint(size)];
  const out = new Uint8Array(head.length + size);
  out.set(head);
  let at = head.length;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** @param {number} value @returns {number[]} */
function varint(value) {
  const out = [];
  do {
    const byte = value % 128;
    value = Math.floor(value / 128);
    out.push(value ? byte | 0x80 : byte);
  } while (value);
  return out;
}

/** @param {number} value */
const u16 = (value) => [value >> 8, value & 0xff];
/** @param {number} value */
const u32 = (value) => [value >>> 24, (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff];

/**
 * Check an integer is within `min`..`max`; return it.
 * @param {unknown} value @param {number} min @param {number} max @param {string} what
 * @returns {number}
 */
function uint(value, min, max, what) {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${what} must be an integer, not ${String(value)}`);
  }
  if (value < min || value > max) {
    throw new RangeError(`${what} is ${value}; it must be ${min} to ${max}`);
  }
  return value;
}

/** @param {unknown} packetId */
const id = (packetId) => uint(packetId, 1, 0xffff, "packetId");

/** @param {unknown} qos @returns {number} */
function qosOf(qos) {
  if (qos !== 0 && qos !== 1) throw new RangeError(`qos is ${String(qos)}; this client uses 0 or 1`);
  return qos;
}

/**
 * @template T
 * @param {readonly T[]} list @param {string} what
 */
function nonEmpty(list, what) {
  if (!Array.isArray(list) || !list.length) throw new TypeError(`${what} must be a non-empty array`);
  return list;
}

/**
 * A UTF-8 string with its two-byte length.
 * @param {unknown} text @param {string} what
 */
function utf8(text, what) {
  if (typeof text !== "string") throw new TypeError(`${what} must be a string, not ${typeof text}`);
  if (text.includes("\0")) throw new RangeError(`${what} contains U+0000, which MQTT forbids`);
  if (LONE_SURROGATE.test(text)) {
    throw new RangeError(`${what} contains a lone UTF-16 surrogate, which UTF-8 cannot carry`);
  }
  return binary(encodeText(text), what);
}

/**
 * Binary data (or text as UTF-8) with its two-byte length.
 * @param {unknown} data @param {string} what
 */
function binary(data, what) {
  const bytes = typeof data === "string" ? encodeText(data) : data;
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array or a string`);
  if (bytes.length > 0xffff) {
    throw new RangeError(`${what} is ${bytes.length} bytes; at most 65535 fit`);
  }
  const out = new Uint8Array(2 + bytes.length);
  out.set(u16(bytes.length));
  out.set(bytes, 2);
  return out;
}

/** @param {unknown} topicFilter */
function topicFilterBytes(topicFilter) {
  const bytes = utf8(topicFilter, "topicFilter");
  const levels = String(topicFilter).split("/");
  const bad = (/** @type {string} */ level, /** @type {number} */ i) =>
    (level.includes("#") && (level !== "#" || i < levels.length - 1)) ||
    (level.includes("+") && level !== "+");
  if (!topicFilter || levels.some(bad)) {
    throw new RangeError(
      `topic filter ${JSON.stringify(topicFilter)} is not valid: it must be non-empty, + must ` +
        "fill a whole level and # must be the whole last level",
    );
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Decoding

// Where a property may appear: a bit per packet type (1 << type), bit 0 for a will.
const WILL = 1;
const CONNECT = 1 << 1;
const CONNACK = 1 << 2;
const PUBLISH = 1 << 3;
const MESSAGE = PUBLISH | WILL;
const ACKS = 0xf0; // PUBACK, PUBREC, PUBREL, PUBCOMP
const SUBSCRIBE = 1 << 8;
const SUBACK = 1 << 9;
const UNSUBACK = 1 << 11;
const DISCONNECT = 1 << 14;
const AUTH = 1 << 15;
const ANY = 0xcfff; // a will and every packet type but PINGREQ and PINGRESP
// Flags: a list that may repeat, only 0 or 1 allowed, 0 not allowed.
const LIST = 1;
const BOOL = 2;
const NONZERO = 4;

/**
 * MQTT 5 properties by identifier: name, value type (1, 2, 4: integer of that many bytes;
 * 0: variable byte integer; "s" UTF-8 string; "b" binary data; "p" string pair), where it may
 * appear and flags.
 * @type {Readonly<Record<number, readonly [keyof Properties, number | string, number, number?]>>}
 */
const PROPERTIES = {
  0x01: ["payloadFormatIndicator", 1, MESSAGE, BOOL],
  0x02: ["messageExpiryInterval", 4, MESSAGE],
  0x03: ["contentType", "s", MESSAGE],
  0x08: ["responseTopic", "s", MESSAGE],
  0x09: ["correlationData", "b", MESSAGE],
  0x0b: ["subscriptionIdentifier", 0, PUBLISH | SUBSCRIBE, LIST | NONZERO],
  0x11: ["sessionExpiryInterval", 4, CONNECT | CONNACK | DISCONNECT],
  0x12: ["assignedClientIdentifier", "s", CONNACK],
  0x13: ["serverKeepAlive", 2, CONNACK],
  0x15: ["authenticationMethod", "s", CONNECT | CONNACK | AUTH],
  0x16: ["authenticationData", "b", CONNECT | CONNACK | AUTH],
  0x17: ["requestProblemInformation", 1, CONNECT, BOOL],
  0x18: ["willDelayInterval", 4, WILL],
  0x19: ["requestResponseInformation", 1, CONNECT, BOOL],
  0x1a: ["responseInformation", "s", CONNACK],
  0x1c: ["serverReference", "s", CONNACK | DISCONNECT],
  0x1f: ["reasonString", "s", CONNACK | ACKS | SUBACK | UNSUBACK | DISCONNECT | AUTH],
  0x21: ["receiveMaximum", 2, CONNECT | CONNACK, NONZERO],
  0x22: ["topicAliasMaximum", 2, CONNECT | CONNACK],
  0x23: ["topicAlias", 2, PUBLISH, NONZERO],
  0x24: ["maximumQos", 1, CONNACK, BOOL],
  0x25: ["retainAvailable", 1, CONNACK, BOOL],
  0x26: ["userProperties", "p", ANY, LIST],
  0x27: ["maximumPacketSize", 4, CONNECT | CONNACK, NONZERO],
  0x28: ["wildcardSubscriptionAvailable", 1, CONNACK, BOOL],
  0x29: ["subscriptionIdentifiersAvailable", 1, CONNACK, BOOL],
  0x2a: ["sharedSubscriptionAvailable", 1, CONNACK, BOOL],
};

/**
 * Turns the byte stream of one connection into the packets a server sends, whatever the
 * chunking. A packet larger than `maxPacketSize` (fixed header included) is refused as soon as
 * its fixed header arrives, before its body is buffered. After {@link PacketReader#push} has
 * thrown, the reader stays failed: every later call throws the same error.
 */
export class PacketReader {
  /**
   * The largest packet accepted, fixed header included.
   * @readonly
   * @type {number}
   */
  maxPacketSize;
  /**
   * The first byte of the packet being read, -1 before it arrives.
   * @private
   */
  _first = -1;
  /**
   * Remaining-length bytes read so far.
   * @private
   */
  _lengthBytes = 0;
  /**
   * The remaining length, as far as read.
   * @private
   */
  _remaining = 0;
  /**
   * The body, once its size is known, while it spans chunks.
   * @private
   * @type {Uint8Array | null}
   */
  _body = null;
  /**
   * Bytes of `_body` filled so far.
   * @private
   */
  _filled = 0;
  /**
   * The error that failed the reader.
   * @private
   * @type {MqttProtocolError | null}
   */
  _error = null;

  /**
   * @param {{ maxPacketSize?: number | undefined }} [options] `maxPacketSize`: the largest packet
   *   accepted, in bytes (2 to 268435460); by default the most MQTT can express.
   */
  constructor({ maxPacketSize = MAX_REMAINING } = {}) {
    this.maxPacketSize = uint(maxPacketSize, 2, MAX_REMAINING + 5, "maxPacketSize");
  }

  /**
   * Add received bytes; return every packet they complete, in order. A partial packet at the
   * end is kept for the next call.
   * @param {Uint8Array} chunk
   * @returns {Packet[]}
   * @throws {MqttProtocolError} at the first invalid packet.
   */
  push(chunk) {
    if (this._error) throw this._error;
    /** @type {Packet[]} */
    const packets = [];
    try {
      let at = 0;
      while (at < chunk.length) {
        const body = this._body;
        if (body) {
          const take = Math.min(body.length - this._filled, chunk.length - at);
          body.set(chunk.subarray(at, at + take), this._filled);
          this._filled += take;
          at += take;
          if (this._filled === body.length) packets.push(this._decode(body));
        } else if (this._header(chunk[at++])) {
          const size = this._remaining;
          if (chunk.length - at >= size) {
            packets.push(this._decode(chunk.subarray(at, at + size)));
            at += size;
          } else {
            this._body = new Uint8Array(size);
          }
        }
      }
    } catch (error) {
      if (error instanceof MqttProtocolError) this._error = error;
      throw error;
    }
    return packets;
  }

  /**
   * Take one byte of a fixed header; true once the header is complete and checked.
   * @private
   * @param {number} byte
   */
  _header(byte) {
    if (this._first < 0) {
      checkFirstByte(byte);
      this._first = byte;
      return false;
    }
    this._remaining += (byte & 0x7f) * 128 ** this._lengthBytes++;
    if (byte & 0x80) {
      if (this._lengthBytes === 4) {
        throw fail(this._first, "the remaining length uses more than 4 bytes");
      }
      return false;
    }
    const total = 1 + this._lengthBytes + this._remaining;
    if (total > this.maxPacketSize) {
      const message = `the packet is ${total} bytes; the limit is ${this.maxPacketSize}`;
      throw fail(this._first, message, PACKET_TOO_LARGE);
    }
    return true;
  }

  /**
   * Decode a complete body and get ready for the next packet.
   * @private
   * @param {Uint8Array} body
   */
  _decode(body) {
    const first = this._first;
    this._first = -1;
    this._lengthBytes = this._remaining = this._filled = 0;
    this._body = null;
    return decodeBody(first, body);
  }
}

/** @param {number} first @param {string} message @param {number} [reasonCode] */
const fail = (first, message, reasonCode) =>
  new MqttProtocolError(`${TYPES[first >> 4]}: ${message}`, reasonCode);

/**
 * Refuse a first byte no server may send to a client, before the rest arrives.
 * @param {number} first
 */
function checkFirstByte(first) {
  const type = first >> 4;
  const flags = first & 0x0f;
  if (type === 3) {
    if ((flags & 6) === 6) throw fail(first, "both QoS bits are set (QoS 3); QoS must be 0, 1 or 2");
    if ((flags & 0x0e) === 8) {
      throw fail(first, "the DUP flag is set on a QoS 0 message", PROTOCOL_ERROR);
    }
  } else if (!type) {
    throw fail(first, "packet type 0 is reserved and never valid");
  } else if (![2, 4, 9, 11, 13, 14].includes(type)) {
    throw fail(first, "a server never sends this packet to this client", PROTOCOL_ERROR);
  } else if (flags) {
    const bits = flags.toString(2).padStart(4, "0");
    throw fail(first, `the fixed-header flags are 0b${bits}; they must be 0`);
  }
}

/**
 * Decode the variable header and payload of a packet whose first byte has been checked.
 * @param {number} first
 * @param {Uint8Array} body
 * @returns {Packet}
 */
function decodeBody(first, body) {
  const type = first >> 4;
  const end = body.length;
  let at = 0;

  /** @param {string} message @param {number} [reasonCode] */
  const error = (message, reasonCode) => fail(first, message, reasonCode);
  /** @param {number} size @param {string} what @param {number} [limit] */
  const take = (size, what, limit = end) => {
    if (at + size > limit) {
      throw error(`the ${what} runs past the end of the ${limit < end ? "properties" : "packet"}`);
    }
    at += size;
    return at - size;
  };
  /** @param {string} what @param {number} [limit] */
  const byte = (what, limit) => body[take(1, what, limit)];
  /** @param {string} what @param {number} [limit] */
  const u16At = (what, limit) => {
    const i = take(2, what, limit);
    return body[i] << 8 | body[i + 1];
  };
  /** @param {string} what @param {number} [limit] */
  const varintAt = (what, limit) => {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const b = byte(what, limit);
      value += (b & 0x7f) * 128 ** i;
      if (!(b & 0x80)) return value;
    }
    throw error(`the ${what} uses more than 4 bytes`);
  };
  /** @param {string} what @param {number} [limit] */
  const bytesAt = (what, limit) => {
    const size = u16At(`length of the ${what}`, limit);
    const i = take(size, what, limit);
    return body.slice(i, i + size);
  };
  /** @param {string} what @param {number} [limit] */
  const text = (what, limit) => {
    let value;
    try {
      value = decodeText(bytesAt(what, limit));
    } catch (e) {
      if (e instanceof MqttProtocolError) throw e;
      throw error(`the ${what} is not well-formed UTF-8`);
    }
    if (value.includes("\0")) throw error(`the ${what} contains U+0000, which MQTT forbids`);
    return value;
  };
  const packetId = () => {
    const value = u16At("packet identifier");
    if (!value) throw error("the packet identifier is 0; it must be 1 to 65535", PROTOCOL_ERROR);
    return value;
  };
  /** @returns {Properties} */
  const properties = () => {
    const length = varintAt("property length");
    const limit = at + length;
    if (limit > end) throw error(`the property length (${length}) runs past the end of the packet`);
    /** @type {Record<string, unknown>} */
    const props = {};
    while (at < limit) {
      const key = varintAt("property identifier", limit);
      const spec = PROPERTIES[key];
      const hexId = `0x${key.toString(16).padStart(2, "0")}`;
      if (!spec) throw error(`${hexId} is not an MQTT 5 property identifier`);
      const [name, kind, where, flags = 0] = spec;
      const what = `property ${name} (${hexId})`;
      if (!(where & (1 << type))) throw error(`${what} is not allowed in ${TYPES[type]}`);
      /** @type {unknown} */
      let value;
      if (kind === "s") value = text(what, limit);
      else if (kind === "b") value = bytesAt(what, limit);
      else if (kind === "p") value = [text(`${what} name`, limit), text(`${what} value`, limit)];
      else if (kind === 0) value = varintAt(what, limit);
      else {
        const i = take(/** @type {number} */ (kind), what, limit);
        let n = 0;
        for (let j = i; j < at; j++) n = n * 256 + body[j];
        value = n;
      }
      if ((flags & BOOL && Number(value) > 1) || (flags & NONZERO && value === 0)) {
        throw error(`${what} is ${String(value)}, which is not allowed`, PROTOCOL_ERROR);
      }
      const seen = props[name];
      if (flags & LIST) {
        if (Array.isArray(seen)) seen.push(value);
        else props[name] = [value];
      } else if (seen !== undefined) {
        throw error(`${what} appears more than once`, PROTOCOL_ERROR);
      } else {
        props[name] = value;
      }
    }
    return props;
  };
  /** @param {Packet} packet */
  const finish = (packet) => {
    if (at !== end) throw error(`${end - at} unexpected byte(s) after the end of the packet`);
    return packet;
  };
  const reasonCodes = () => {
    if (at >= end) throw error("it carries no reason code; it needs one per topic filter");
    const codes = Array.from(body.subarray(at));
    at = end;
    return codes;
  };

  switch (type) {
    case 2: {
      const ack = byte("connect acknowledge flags");
      if (ack & 0xfe) throw error("reserved bits of the connect acknowledge flags are set");
      const reasonCode = byte("reason code");
      // A server that does not speak MQTT 5 answers with a 3.1.1 CONNACK, without properties.
      const props = at < end ? properties() : {};
      return finish({ type: "connack", sessionPresent: ack === 1, reasonCode, properties: props });
    }
    case 3: {
      const topic = text("topic name");
      const qos = /** @type {0 | 1 | 2} */ ((first >> 1) & 3);
      /** @type {Publish} */
      const packet = {
        type: "publish",
        topic,
        payload: new Uint8Array(0),
        qos,
        dup: !!(first & 8),
        retain: !!(first & 1),
        properties: {},
      };
      if (qos) packet.packetId = packetId();
      packet.properties = properties();
      if (/[+#]/.test(topic)) {
        const message = `the topic name ${JSON.stringify(topic)} contains a wildcard (+ or #)`;
        throw error(message, TOPIC_NAME_INVALID);
      }
      if (!topic && packet.properties.topicAlias === undefined) {
        throw error("the topic name is empty and no topic alias is given", PROTOCOL_ERROR);
      }
      packet.payload = body.slice(at);
      return packet;
    }
    case 4: {
      const id = packetId();
      const reasonCode = at < end ? byte("reason code") : 0;
      const props = at < end ? properties() : {};
      return finish({ type: "puback", packetId: id, reasonCode, properties: props });
    }
    case 9:
    case 11: {
      const id = packetId();
      const props = properties();
      const packetType = type === 9 ? "suback" : "unsuback";
      return { type: packetType, packetId: id, properties: props, reasonCodes: reasonCodes() };
    }
    case 13:
      return finish({ type: "pingresp" });
    default: {
      const reasonCode = at < end ? byte("reason code") : 0;
      const props = at < end ? properties() : {};
      return finish({ type: "disconnect", reasonCode, properties: props });
    }
  }
}
