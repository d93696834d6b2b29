/**
 * One MQTT 5 connection to AWS IoT Core over a SigV4-presigned WebSocket.
 *
 * A {@link MqttConnection} is one socket: it opens, says CONNECT, waits for CONNACK, answers
 * PUBLISH QoS 1 with PUBACK once the message was handed over, keeps the connection alive with
 * PINGREQ, and reports its end once. Reconnecting is the client's job (with a fresh presigned
 * URL and fresh credentials each time), not the connection's.
 *
 * @module
 */

import { AccessDenied, ServiceUnavailable } from "./errors.js";
import {
  PacketReader,
  encodeConnect,
  encodeDisconnect,
  encodePingreq,
  encodePuback,
  encodeSubscribe,
  encodeUnsubscribe,
} from "./mqtt.js";

/**
 * What a connection tells its owner.
 * @typedef {{
 *   message: (topic: string, payload: Uint8Array) => void,
 *   closed: (reason: string) => void,
 * }} ConnectionEvents
 */

/** MQTT 5 reason codes that mean "not allowed". */
const REFUSALS = new Set([0x86, 0x87, 0x8c, 0x9c, 0x9d]);

/**
 * A MQTT 5 reason code as a person reads it.
 * @param {number} code
 */
export function reasonText(code) {
  const names = /** @type {Record<number, string>} */ ({
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8e: "session taken over",
    0x8f: "topic filter invalid",
    0x8d: "keep alive timeout",
    0x8c: "bad authentication method",
    0x8b: "server shutting down",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x9f: "connection rate exceeded",
  });
  return `0x${code.toString(16).padStart(2, "0")} ${names[code] ?? "reason"}`;
}

/** One MQTT 5 connection over a WebSocket. */
export class MqttConnection {
  /**
   * @param {{ url: string, clientId: string, keepAliveS: number, connectTimeoutMs: number,
   *   WebSocket: typeof globalThis.WebSocket, events: ConnectionEvents }} options
   */
  constructor(options) {
    this.options = options;
    this.clientId = options.clientId;
    /** @private */
    this._reader = new PacketReader({ maxPacketSize: 256 * 1024 });
    /** @private @type {Map<number, (codes: number[]) => void>} */
    this._acks = new Map();
    /** @private */
    this._nextId = 1;
    /** @private @type {ReturnType<typeof setInterval> | undefined} */
    this._pinger = undefined;
    /** @private */
    this._lastHeard = Date.now();
    /** @private @type {WebSocket | null} */
    this._ws = null;
    /** @private */
    this._ended = false;
    /** True between CONNACK and the end. */
    this.up = false;
    /** @private @type {((answered: boolean) => void) | null} */
    this._pong = null;
  }

  /**
   * Open the socket and say CONNECT; resolves on CONNACK success.
   * @returns {Promise<void>}
   * @throws {AccessDenied} AWS IoT refused the connection (policy); {@link ServiceUnavailable}
   *   for anything else
   */
  open() {
    const { url, WebSocket: Socket, connectTimeoutMs } = this.options;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (/** @type {Error | null} */ error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) {
          this._end(error.message, false);
          reject(error);
        } else {
          resolve();
        }
      };
      const timer = setTimeout(
        () => settle(new ServiceUnavailable(`no CONNACK within ${connectTimeoutMs} ms`)),
        connectTimeoutMs,
      );
      let ws;
      try {
        ws = new Socket(url, "mqtt");
      } catch (error) {
        settle(new ServiceUnavailable(`cannot open the WebSocket: ${String(error)}`));
        return;
      }
      this._ws = ws;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        ws.send(
          /** @type {Uint8Array<ArrayBuffer>} */ (encodeConnect({
            clientId: this.clientId,
            keepAlive: this.options.keepAliveS,
            cleanStart: true,
            sessionExpiryInterval: 0,
          })),
        );
      };
      ws.onerror = () => {};
      ws.onclose = (event) => {
        const why = `the WebSocket closed (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`;
        if (!settled) {
          settle(new ServiceUnavailable(`${why} before CONNACK`));
        }
        this._end(why, true);
      };
      ws.onmessage = (event) => {
        this._lastHeard = Date.now();
        /** @type {import("./mqtt.js").Packet[]} */
        let packets;
        try {
          packets = this._reader.push(new Uint8Array(/** @type {ArrayBuffer} */ (event.data)));
        } catch (error) {
          const reason = `a malformed packet from the server: ${String(error)}`;
          settle(new ServiceUnavailable(reason));
          this._end(reason, true);
          return;
        }
        for (const packet of packets) {
          if (packet.type === "connack") {
            if (packet.reasonCode === 0) {
              this.up = true;
              this._startPinging();
              settle(null);
            } else {
              const text = `AWS IoT refused the connection (CONNACK ${reasonText(packet.reasonCode)})`;
              settle(REFUSALS.has(packet.reasonCode) ? new AccessDenied(text) : new ServiceUnavailable(text));
            }
          } else {
            this._onPacket(packet);
          }
        }
      };
    });
  }

  /** @private @param {import("./mqtt.js").Packet} packet */
  _onPacket(packet) {
    if (packet.type === "publish") {
      this.options.events.message(packet.topic, packet.payload);
      if (packet.qos === 1 && packet.packetId !== undefined) {
        this._send(encodePuback(packet.packetId));
      }
    } else if (packet.type === "suback" || packet.type === "unsuback") {
      const waiter = this._acks.get(packet.packetId);
      this._acks.delete(packet.packetId);
      waiter?.(packet.reasonCodes);
    } else if (packet.type === "pingresp") {
      const pong = this._pong;
      this._pong = null;
      pong?.(true);
    } else if (packet.type === "disconnect") {
      const reason = packet.properties?.reasonString;
      this._end(`the server disconnected (${reasonText(packet.reasonCode)}${reason ? `: ${reason}` : ""})`, true);
    }
  }

  /** @private */
  _startPinging() {
    const keepAliveMs = this.options.keepAliveS * 1000;
    this._pinger = setInterval(() => {
      if (Date.now() - this._lastHeard > keepAliveMs * 1.5) {
        this._end("no answer from the server within 1.5 keep-alive periods", true);
        return;
      }
      this._send(encodePingreq());
    }, keepAliveMs / 2);
  }

  /**
   * Ask the server for a PINGRESP now: resolves true when it answers within `timeoutMs`.
   * A tab coming back to the foreground uses it to find a socket that died in the background.
   * @param {number} timeoutMs
   * @returns {Promise<boolean>}
   */
  ping(timeoutMs) {
    if (!this.up) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._pong = null;
        resolve(false);
      }, timeoutMs);
      this._pong = (answered) => {
        clearTimeout(timer);
        resolve(answered);
      };
      this._send(encodePingreq());
    });
  }

  /** @private @param {Uint8Array} bytes */
  _send(bytes) {
    const ws = this._ws;
    if (ws && ws.readyState === 1) {
      ws.send(/** @type {Uint8Array<ArrayBuffer>} */ (bytes));
    }
  }

  /** @private @returns {number} */
  _packetId() {
    const id = this._nextId;
    this._nextId = id === 65535 ? 1 : id + 1;
    return id;
  }

  /**
   * @private
   * @param {(id: number) => Uint8Array} encode
   * @returns {Promise<number[]>}
   */
  _request(encode) {
    if (!this.up) {
      return Promise.reject(new ServiceUnavailable("the push connection is down"));
    }
    const id = this._packetId();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._acks.delete(id);
        reject(new ServiceUnavailable("no answer to SUBSCRIBE/UNSUBSCRIBE within 10 s"));
      }, 10_000);
      this._acks.set(id, (codes) => {
        clearTimeout(timer);
        if (codes.length === 0) {
          reject(new ServiceUnavailable("the connection closed before the answer"));
        } else {
          resolve(codes);
        }
      });
      this._send(encode(id));
    });
  }

  /**
   * Subscribe to `topic` at QoS 1.
   * @param {string} topic
   * @returns {Promise<void>}
   * @throws {AccessDenied} SUBACK refused it; {@link ServiceUnavailable} the connection went
   */
  async subscribe(topic) {
    const [code] = await this._request((id) => encodeSubscribe(id, [{ topicFilter: topic, qos: 1 }]));
    if (code >= 0x80) {
      const text = `AWS IoT refused the subscription to ${topic} (SUBACK ${reasonText(code)})`;
      throw REFUSALS.has(code) ? new AccessDenied(text) : new ServiceUnavailable(text);
    }
  }

  /**
   * Unsubscribe from `topic`.
   * @param {string} topic
   * @returns {Promise<void>}
   */
  async unsubscribe(topic) {
    await this._request((id) => encodeUnsubscribe(id, [topic]));
  }

  /**
   * Give the connection up as dead (a ping went unanswered): closes the socket and reports
   * `closed(reason)` to the owner, as a lost connection does.
   * @param {string} reason
   */
  drop(reason) {
    this._end(reason, true);
  }

  /** Say DISCONNECT and close the socket (no report to the owner). */
  close() {
    if (this._ended) return;
    this._send(encodeDisconnect(0));
    this._end("closed", false);
  }

  /**
   * @private
   * @param {string} reason
   * @param {boolean} report
   */
  _end(reason, report) {
    if (this._ended) return;
    this._ended = true;
    this.up = false;
    clearInterval(this._pinger);
    for (const waiter of this._acks.values()) {
      waiter([]);
    }
    this._acks.clear();
    const pong = this._pong;
    this._pong = null;
    pong?.(false);
    try {
      this._ws?.close();
    } catch {
      // already closing
    }
    if (report) {
      this.options.events.closed(reason);
    }
  }
}
