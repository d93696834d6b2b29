"""Network primitives with no AWS meaning: HTTP/1.1 parsing, WebSocket framing, TLS
certificates, the threaded HTTPS server and the :class:`Service` lifecycle every local
service follows."""
