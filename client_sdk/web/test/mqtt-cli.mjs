// Encode and decode MQTT 5 packets with src/mqtt.js for tests in another language: one JSON
// job per line on stdin, one JSON result per line on stdout, in order. Used by
// tests/e2e/test_web_mqtt_codec.py, which checks the results against the local broker's
// Python codec.
//
//   {"op": "encode", "packet": {"type": "connect", ...encodeConnect options}}  -> {"hex": "..."}
//     types: connect, subscribe {packetId, subscriptions}, unsubscribe {packetId, topicFilters},
//     publish, puback {packetId, reasonCode}, pingreq, disconnect {reasonCode}
//   {"op": "decode", "hex": "...", "maxPacketSize"?: n} -> {"packets": [...]}
//
// Bytes travel as hex: in a packet to encode, `payload` and `password` given as {"hex": "..."}
// are bytes (a plain string is text); in decoded packets every Uint8Array is a hex string.
// A refused job answers {"error": "...", "name": "RangeError" | "MqttProtocolError" | ...}
// and, for MqttProtocolError, "reasonCode".

import { createInterface } from "node:readline";

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

/** @param {string} hex */
const fromHex = (hex) => Uint8Array.from(Buffer.from(hex, "hex"));

/** Uint8Array values (at any depth) as hex strings. @param {unknown} value @returns {unknown} */
function toJson(value) {
  if (value instanceof Uint8Array) return Buffer.from(value).toString("hex");
  if (Array.isArray(value)) return value.map(toJson);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, toJson(item)]));
  }
  return value;
}

/** {"hex": "..."} values as bytes. @param {Record<string, any>} packet */
function withBytes(packet) {
  return Object.fromEntries(
    Object.entries(packet).map(([key, value]) => {
      const isBytes = value && typeof value === "object" && typeof value.hex === "string";
      return [key, isBytes ? fromHex(value.hex) : value];
    }),
  );
}

/** @param {Record<string, any>} packet @returns {Uint8Array} */
function encode(packet) {
  const p = withBytes(packet);
  switch (p.type) {
    case "connect":
      return encodeConnect(/** @type {any} */ (p));
    case "subscribe":
      return encodeSubscribe(p.packetId, p.subscriptions);
    case "unsubscribe":
      return encodeUnsubscribe(p.packetId, p.topicFilters);
    case "publish":
      return encodePublish(/** @type {any} */ (p));
    case "puback":
      return encodePuback(p.packetId, p.reasonCode);
    case "pingreq":
      return encodePingreq();
    case "disconnect":
      return encodeDisconnect(p.reasonCode);
    default:
      throw new TypeError(`unknown packet type ${JSON.stringify(p.type)}`);
  }
}

/** @param {Record<string, any>} job */
function run(job) {
  try {
    if (job.op === "encode") return { hex: Buffer.from(encode(job.packet)).toString("hex") };
    if (job.op === "decode") {
      const reader = new PacketReader(job.maxPacketSize ? { maxPacketSize: job.maxPacketSize } : {});
      return { packets: toJson(reader.push(fromHex(job.hex))) };
    }
    throw new TypeError(`unknown op ${JSON.stringify(job.op)}`);
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    /** @type {Record<string, unknown>} */
    const result = { error: error.message, name: error.name };
    if (error instanceof MqttProtocolError) result.reasonCode = error.reasonCode;
    return result;
  }
}

for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim()) process.stdout.write(`${JSON.stringify(run(JSON.parse(line)))}\n`);
}
