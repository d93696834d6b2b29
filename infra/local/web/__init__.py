"""The local stack's web site: the demo page and the web client's modules, over plain HTTP on
127.0.0.1 (a secure context for browsers, so Web Crypto works) — see :mod:`.site`."""
