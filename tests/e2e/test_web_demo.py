"""``tidings demo --web`` as a person runs it: the command prints the page's URL, and the page,
opened in Chromium, shows the changes the demo keeps writing arriving live."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.browser import chromium, page_errors

TIDINGS = Path(sys.executable).with_name("tidings")


def test_demo_web_serves_a_page_where_changes_arrive_live(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [str(TIDINGS), "demo", "--web", "--port", "0", "--duration", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while not any("Ctrl-C" in line for line in lines) and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
        text = "".join(lines)
        url = re.search(r"Open (http://127\.0\.0\.1:\d+/) and sign in", text)
        ca = re.search(r"^\s+(\S+ca\.pem): see docs/WEB\.md", text, re.MULTILINE)
        assert url and ca, text
        with chromium(ca.group(1)) as browser:
            page = browser.new_page()
            errors = page_errors(page)
            page.goto(url.group(1))
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "alice-pass-2026")
            page.click("#signin button")
            page.wait_for_selector("#state[data-state=live]", timeout=30_000)
            for selector in ("#scores li", "#board li", "#todos li"):
                page.wait_for_selector(selector, timeout=30_000)
            first = page.inner_text("#board")
            # the demo keeps writing: the board's note changes while the page looks
            page.wait_for_function(
                "(before) => document.querySelector('#board').innerText !== before",
                arg=first,
                timeout=30_000,
            )
            page.screenshot(path=str(tmp_path / "demo-web.png"), full_page=True)
            assert page.inner_text("#state") == "live"
            assert errors == []
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
