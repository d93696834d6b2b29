/**
 * `@tidings/client`: the web client of Tidings (browsers, Node ≥ 20, React Native).
 *
 * Today: the per-channel ordering core ({@link ChannelOrder}), the port of the Python client's
 * `client_sdk/_ordering.py`, and SigV4 signing ({@link signRequest}, {@link presignUrl}) for
 * the API calls and the AWS IoT WebSocket URL. The sign-in, transports and subscriptions
 * follow.
 *
 * @module
 */

export * from "./ordering.js";
export { presignUrl, signRequest } from "./sigv4.js";
