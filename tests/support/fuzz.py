"""How many examples a property-based test tries: every one in ``make test``, a fifth in
``make check`` (which sets ``TIDINGS_FUZZ_SCALE=0.2`` for a quick developer loop)."""

from __future__ import annotations

import os

SCALE_VARIABLE = "TIDINGS_FUZZ_SCALE"
MINIMUM_EXAMPLES = 20


def examples(full: int) -> int:
    """``full`` scaled by ``TIDINGS_FUZZ_SCALE`` (default 1), never fewer than 20."""
    try:
        scale = float(os.environ.get(SCALE_VARIABLE, "1"))
    except ValueError:
        raise ValueError(f"{SCALE_VARIABLE} must be a number such as 0.2") from None
    if not 0 < scale <= 10:
        raise ValueError(f"{SCALE_VARIABLE} must be above 0 and at most 10, not {scale}")
    return max(MINIMUM_EXAMPLES, round(full * scale))
