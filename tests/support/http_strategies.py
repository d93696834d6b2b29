"""Hypothesis strategies for raw HTTP requests: header names and values, URL characters."""

from __future__ import annotations

from hypothesis import strategies as st

RESERVED = {"connection", "content-length", "transfer-encoding"}
"""Headers the fuzzers set themselves (framing), never drawn."""
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
header_names = st.text(TOKEN_CHARS, min_size=1, max_size=24).filter(
    lambda n: n.lower() not in RESERVED
)
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60
).map(str.strip)
headers = st.lists(st.tuples(header_names, header_values), max_size=6)
url_chars = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
