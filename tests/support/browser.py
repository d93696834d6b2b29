"""Chromium for the browser tests and benchmarks: Debian's build, driven by Playwright.

``chromium(ca_file)`` starts ``/usr/bin/chromium`` (the ``chromium`` package, which ``make
test`` installs with apt; ``TIDINGS_CHROMIUM`` names another executable) through Playwright's
Python package, headless, with a fresh profile, and yields a Playwright ``Browser`` (sync API).
Playwright never downloads a browser here.

How the browser trusts the local stack. The local stack's certificates come from its own CA
(``infra/local/net/certs.py``: ``ca.pem``, and ``server.pem`` beside it, which the API and the
IoT gateway both present). TLS checks stay on: the browser is given
``--ignore-certificate-errors-spki-list`` with the SHA-256 of the public key (SPKI) of the
server certificate, after checking here that the local CA issued it. Chromium then accepts
that one key where it would have said ``ERR_CERT_AUTHORITY_INVALID``, and still refuses every
other certificate, another local CA's included (``tests/e2e/test_browser_local_ca.py`` shows
both).

- The list must name the *server* certificate's key: the servers send only their own
  certificate, not the CA's, and Chromium matches the list against the chain it was sent, so
  the CA's key matched nothing (tried: ``ERR_CERT_AUTHORITY_INVALID`` with the CA's hash, the
  page loads with the server certificate's).
- What it gives up against a real trust anchor: for that key Chromium ignores every
  certificate error, the host name included. The key is the stack's own, made on this machine,
  so a page reaching another name with it would have to be served by the stack anyway.
- Why not an NSS database (``certutil -A -t C,,`` into ``$HOME/.pki/nssdb``, what a developer
  does by hand, with full checks): it needs ``certutil`` (libnss3-tools, one more apt package)
  and a temporary ``HOME`` for the browser, and it is a copy of the CA that goes stale when the
  stack makes a new one. The flag is computed from the files at every launch.
- Never ``--ignore-certificate-errors`` or Playwright's ``ignore_https_errors``: they turn the
  checks off for every certificate.

``ca_file=None`` launches the same browser trusting nothing but its own roots: the negative
check that the checks are on.

``page_errors(page)`` gathers a page's console errors and uncaught exceptions as they happen,
for a test to assert that there were none.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Playwright,
    sync_playwright,
)

CHROMIUM_ENV = "TIDINGS_CHROMIUM"
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (we run as root), and none of the browser's own background
# connections, which cannot leave this machine and would fail or stall the start.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SERVER_CERT_FILE = "server.pem"  # infra/local/net/certs.py writes it beside the CA file


def chromium_path(environ: Mapping[str, str] = os.environ) -> Path:
    """The Chromium executable: ``TIDINGS_CHROMIUM`` or Debian's ``/usr/bin/chromium``."""
    path = Path(environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM)
    if not path.is_file():
        raise FileNotFoundError(
            f"no Chromium at {path}: install Debian's chromium package (`make test` does), "
            f"or set {CHROMIUM_ENV} to a Chromium executable"
        )
    return path


def spki_sha256(certificate: x509.Certificate) -> str:
    """Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's
    ``--ignore-certificate-errors-spki-list`` takes it."""
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def local_server_keys(ca_file: str | Path) -> list[str]:
    """The SPKI hashes of the server certificate beside ``ca_file``, once checked to be
    issued by that CA (a ``ValueError`` otherwise)."""
    ca_path = Path(ca_file)
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    server_path = ca_path.with_name(SERVER_CERT_FILE)
    server = x509.load_pem_x509_certificate(server_path.read_bytes())
    try:
        server.verify_directly_issued_by(ca)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{server_path} was not issued by the CA in {ca_path}") from exc
    return [spki_sha256(server)]


def launch_args(ca_file: str | Path | None) -> list[str]:
    """Chromium's command-line flags: ``FLAGS``, and trust in the local stack's server
    certificate when ``ca_file`` is given."""
    args = list(FLAGS)
    if ca_file is not None:
        args.append("--ignore-certificate-errors-spki-list=" + ",".join(local_server_keys(ca_file)))
    return args


class _Driver(threading.local):
    """Playwright's driver process of this thread: its sync API allows one at a time per
    thread, so browsers open at once (one inside another's ``with``) share it."""

    playwright: Playwright | None = None
    users = 0


_driver = _Driver()


@contextmanager
def _playwright() -> Iterator[Playwright]:
    if _driver.playwright is None:
        _driver.playwright = sync_playwright().start()
    _driver.users += 1
    try:
        yield _driver.playwright
    finally:
        _driver.users -= 1
        if _driver.users == 0:
            running, _driver.playwright = _driver.playwright, None
            if running is not None:
                running.stop()


@contextmanager
def chromium(
    ca_file: str | Path | None, environ: Mapping[str, str] = os.environ
) -> Iterator[Browser]:
    """Debian's Chromium, headless with a fresh profile, trusting the local stack whose CA is
    ``ca_file`` (``None``: trusting nothing local); closed on leaving."""
    executable = chromium_path(environ)
    args = launch_args(ca_file)
    with _playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield browser
        finally:
            browser.close()


def page_errors(page: Page) -> list[str]:
    """A list that fills with the page's console errors and uncaught exceptions from now on."""
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            found.append(f"console: {message.text}")

    def on_page_error(error: Error) -> None:
        found.append(f"uncaught: {error.name}: {error.message}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    return found
