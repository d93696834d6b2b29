"""``python3 -m client_sdk.greengrass.component``: the Tidings component's artifact.

Run by the nucleus as the recipe's ``Run`` step, with the variables a nucleus gives a component
(see :meth:`~client_sdk.GreengrassCore.from_environment`)::

    python3 -m client_sdk.greengrass.component --api-url URL --channels things/me/settings
        [--journal changes.jsonl] [--topic-prefix tidings/dev/] [--verify-interval 30]

It subscribes to each channel after the cursor its journal holds (from the start of the
channel the first time), appends every change once and in order to the journal, and runs until
the nucleus stops it (SIGTERM) or sign-in is refused for good. Exit status: 0 when stopped,
1 when the component cannot work (refused, misconfigured), so the nucleus reports it BROKEN
after its retries.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from client_sdk import ClientOptions, ContinuityLost, GreengrassCore, Tidings, TidingsError
from client_sdk._signin import DEFAULT_TOPIC_PREFIX
from client_sdk.greengrass.journal import ChangeJournal

__all__ = ["main"]

log = logging.getLogger("tidings.greengrass")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m client_sdk.greengrass.component",
        description="Keep the core device's Tidings channels in a local JSON-lines journal.",
    )
    parser.add_argument("--api-url", required=True, help="the Tidings HTTP API's base URL")
    parser.add_argument(
        "--channels",
        required=True,
        help="comma-separated channels, e.g. things/me/settings (me: this core device)",
    )
    parser.add_argument(
        "--journal",
        default="changes.jsonl",
        help="the journal file, relative to the component's work folder (default changes.jsonl)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=DEFAULT_TOPIC_PREFIX,
        help=f"the stack's topic prefix, tidings/<stage>/ (default {DEFAULT_TOPIC_PREFIX})",
    )
    parser.add_argument(
        "--verify-interval",
        type=float,
        default=30.0,
        help="seconds between reads that catch what the core missed offline (default 30)",
    )
    return parser


def _lost(journal: ChangeJournal, name: str, _channel: str, lost: ContinuityLost) -> None:
    journal.lost(name, lost)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the component until SIGTERM/SIGINT; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    channels = [name.strip() for name in args.channels.split(",") if name.strip()]
    if not channels:
        print("tidings component: --channels names no channel", file=sys.stderr)
        return 1
    if args.verify_interval <= 0:
        print("tidings component: --verify-interval must be above 0", file=sys.stderr)
        return 1
    try:
        core = GreengrassCore.from_environment(args.topic_prefix)
        journal = ChangeJournal(args.journal)
    except (ValueError, OSError) as exc:
        print(f"tidings component: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    options = ClientOptions.from_env(verify_interval_s=args.verify_interval)
    try:
        with Tidings.connect(args.api_url, core, options=options) as client:
            for name in channels:
                cursor = journal.cursor(name)
                client.subscribe(
                    name,
                    functools.partial(journal.apply, name),
                    after=0 if cursor is None else cursor,
                    on_continuity_lost=functools.partial(_lost, journal, name),
                )
                log.info("following %s after %s", name, 0 if cursor is None else cursor)
            while not stop.wait(1.0):
                if client.state == "signed_out":
                    print("tidings component: signed out; see the log", file=sys.stderr)
                    return 1
    except TidingsError as exc:
        print(f"tidings component: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        journal.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
