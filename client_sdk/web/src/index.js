/**
 * `@tidings/client`: the web client of Tidings (browsers, Node ≥ 20, React Native).
 *
 * ```js
 * import { Tidings } from "@tidings/client";
 * const t = await Tidings.connect(apiUrl, { method: "password", username, password });
 * const sub = await t.subscribe("users/me/todos", (change) => render(change));
 * ```
 *
 * Also exported: the errors, the per-channel ordering core ({@link ChannelOrder}), SigV4
 * signing ({@link signRequest}, {@link presignUrl}) and the MQTT 5 codec the client uses.
 *
 * @module
 */

export { Subscription, Tidings } from "./client.js";
export * from "./errors.js";
export * from "./ordering.js";
export { presignUrl, signRequest } from "./sigv4.js";
