"""docs/CLIENT.md, the client's reference, keeps up with the code: every public name, option
and state is in it, its error tree is the code's, and its testing example is the test file
the suite runs."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import client_sdk
import client_sdk.testing
from client_sdk import ClientOptions, ConnectionState
from client_sdk import _errors as errors

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DOC = (ROOT / "docs" / "CLIENT.md").read_text(encoding="utf-8")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_testing_example_is_shown_as_the_suite_runs_it() -> None:
    example = (ROOT / "tests" / "unit" / "test_testing_double_example.py").read_text("utf-8")
    assert example in python_blocks(CLIENT_DOC)


def test_every_public_name_option_and_state_is_documented() -> None:
    for name in [*client_sdk.__all__, *client_sdk.testing.__all__]:
        assert re.search(rf"\b{name}\b", CLIENT_DOC), name
    table = CLIENT_DOC[CLIENT_DOC.index("| field | default |") :]
    table = table[: table.index("\n\n")]
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)?", table, flags=re.M))
    names = {name for pair in documented for name in pair if name}
    assert names == {f.name for f in fields(ClientOptions)}
    states = CLIENT_DOC[CLIENT_DOC.index("| state | meaning |") :]
    states = states[: states.index("\n\n")]
    assert set(re.findall(r"^\| `(\w+)` \|", states, flags=re.M)) == {
        s.value for s in ConnectionState
    }


def test_the_error_tree_is_the_code_s() -> None:
    tree = re.search(r"TidingsError\n(?:[├└│ ].*\n)+", CLIENT_DOC)
    assert tree is not None
    in_code = errors.__doc__ or ""
    code_tree = in_code[in_code.index("TidingsError") :].strip().replace("``", "")
    assert tree.group(0).strip() == code_tree
