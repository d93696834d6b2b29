/**
 * `@tidings/client`: the web client of Tidings (browsers, Node ≥ 20, React Native).
 *
 * Today: the per-channel ordering core ({@link ChannelOrder}), the port of the Python client's
 * `client_sdk/_ordering.py`. The sign-in, transports and subscriptions follow.
 *
 * @module
 */

export * from "./ordering.js";
