"""``tidings cost`` run as the operator runs it (a process of its own, ``python -m infra.cli``):
the README's worked example prints exactly what the README shows; flags, a workload file,
``--json`` and ``--plot`` work with the price list and template tidings ships; mistakes are
one line on stderr with the documented exit status."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IDLE = [
    "--clients",
    "1000",
    "--connected-hours",
    "24",
    "--changes-per-s",
    "0",
    "--subscribers-per-change",
    "10",
    "--poll-interval",
    "10",
]


def tidings_cost(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "cost", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},  # nothing from this shell
    )


def readme_cost_example() -> tuple[list[str], str]:
    """The README's `tidings cost` command and the output shown under it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Push or poll: what it costs") :]
    command = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    shown = re.search(r"```text\n(.*?)```", section, flags=re.S)
    assert command and shown, "the README's cost section has no sh block and text block"
    (line,) = [line for line in command[1].splitlines() if "tidings cost" in line]
    words = shlex.split(line)
    assert words[:2] == [".venv/bin/tidings", "cost"], words
    return words[2:], shown[1]


def test_the_readme_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    args, shown = readme_cost_example()
    done = tidings_cost(*args, cwd=tmp_path)  # from any folder: the data files ship inside
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown, "the README's cost example is out of date: paste the new output"


def test_flags_print_the_figures_worked_out_by_hand() -> None:
    done = tidings_cost(*IDLE)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # 1,000 clients x 24 h x 60 x 30.42 days = 43,800,000 connection-minutes x $0.08/M
    assert re.search(r"connectivity\s+43,800,000 connection-minutes\s+\$3\.50\n", out)
    # an idle long-poll: 1,000 x 2,628,000 s / 20.025 s = 131,235,955 polls, each holding
    # 256 MB for its 20.025 s: 657,000,000 GB-s x $0.0000166667 = $10,950.02
    assert re.search(r"API requests\s+131,235,955 REST API requests\s+\$459\.33\n", out)
    assert re.search(r"every waiting second\)\s+657,000,000 GB-seconds\s+\$10,950\.02\n", out)
    # a short poll every 10 s: 262,800,000 requests x $3.50/M
    assert re.search(r"API requests\s+262,800,000 REST API requests\s+\$919\.80\n", out)
    # $10,325.85 / P = $3.504 at P = 2,946.875 s
    assert "break-even poll interval, through Lambda: 2,947 s (49.1 min)" in out
    assert "break-even poll interval, API Gateway -> DynamoDB: 2,719 s (45.3 min)" in out
    assert "cheapest: push: AWS IoT Core (Tidings), $3.50 a month" in out
    said = " ".join(out.split())  # the warnings are wrapped at 100 characters
    assert "ChannelsConcurrency" in said and "the account has 1,000" in said
    assert max(len(line) for line in out.splitlines()) <= 100


def test_a_workload_file_with_assumptions_and_flags_that_win(tmp_path: Path) -> None:
    workload = tmp_path / "workload.yaml"
    workload.write_text(
        "clients: 1000\n"
        "connected_hours: 24\n"
        "changes_per_s: 1\n"
        "subscribers_per_change: 10\n"
        "poll_interval_s: 10\n"
        "region: us-east-1\n"
        "envelope_bytes: 11000  # 3 IoT messages of 5 KB each\n",
        encoding="utf-8",
    )
    done = tidings_cost("--workload", str(workload))
    assert done.returncode == 0, done.stderr
    # 1/s x 2,628,000 s x 3 units = 7,884,000 publishes; x 10 subscribers = 78,840,000
    assert re.search(r"publishes from Lambda\s+7,884,000 messages\s+\$7\.88\n", done.stdout)
    assert re.search(r"to subscribers\s+78,840,000 messages\s+\$78\.84\n", done.stdout)
    assert "11,000-byte changes" in done.stdout
    overridden = tidings_cost("--workload", str(workload), "--clients", "2000")
    assert overridden.returncode == 0, overridden.stderr
    assert "of 2,000 clients" in overridden.stdout.replace("\n", " ")
    assert re.search(r"connectivity\s+87,600,000 connection-minutes", overridden.stdout)


def test_json_holds_the_same_figures() -> None:
    done = tidings_cost(*IDLE, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["region"] == "us-east-1" and result["prices_read_on"] == "2026-11-29"
    assert result["deployment"]["channels_memory_mb"] == 256  # read from the template
    assert result["deployment"]["api"] == "rest"
    keys = [option["key"] for option in result["options"]]
    assert keys == [
        "push-iot",
        "long-poll",
        "short-poll",
        "short-poll-dynamodb",
        "push-appsync",
        "push-apigw-websocket",
    ]
    for option in result["options"]:
        assert option["usd"] == pytest.approx(sum(item["usd"] for item in option["items"]))
        assert option["total_usd"] == pytest.approx(option["usd"] + result["publisher"]["usd"])
    assert result["cheapest"] == "push-iot"
    by_option = {found["option"]: found["interval_s"] for found in result["break_even"]}
    assert by_option["short-poll"] == pytest.approx(2946.875, rel=1e-5)
    assert by_option["short-poll-dynamodb"] == pytest.approx(2718.75, rel=1e-5)
    assert any("ChannelsConcurrency" in warning for warning in result["warnings"])


def test_plot_writes_a_real_png(tmp_path: Path) -> None:
    plot = tmp_path / "cost.png"
    done = tidings_cost(*IDLE, "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    assert f"plot written to {plot}" in done.stdout
    data = plot.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000  # lines, labels and a legend, not an empty canvas
    image = pytest.importorskip("matplotlib.image").imread(str(plot))
    assert image.shape[:2] == (600, 1000)  # 10 x 6 inches at 100 dpi
    assert image[..., :3].std() > 0.05  # something is drawn on the white


@pytest.mark.parametrize(
    ("args", "status", "says"),
    [
        (["--clients", "10"], 2, "the workload needs --connected-hours"),
        ([*IDLE[:2], "--connected-hours", "25", *IDLE[4:]], 2, "connected_hours must be"),
        ([*IDLE, "--region", "eu-west-9"], 1, "no prices for eu-west-9; it has us-east-1"),
        (["--workload", "/nonexistent/w.yaml"], 2, "cannot read the workload file"),
        ([*IDLE, "--clients", "many"], 2, "invalid int value"),
    ],
)
def test_mistakes_are_one_line_with_the_documented_status(
    args: list[str], status: int, says: str
) -> None:
    done = tidings_cost(*args)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""


def test_an_unknown_workload_field_is_named(tmp_path: Path) -> None:
    workload = tmp_path / "typo.yaml"
    workload.write_text("clients: 10\nconected_hours: 8\n", encoding="utf-8")
    done = tidings_cost("--workload", str(workload))
    assert done.returncode == 2
    assert "unknown workload field(s) conected_hours" in done.stderr
