"""``tidings demo``: the whole local stack and two real users, in about ten seconds.

It brings the stack up from ``infra/template.yaml``, creates two users in two tenants, signs
them in through ``POST /v1/login`` (Cognito developer identities, temporary credentials),
subscribes each with the Tidings client (MQTT 5 over a SigV4 WebSocket to the local AWS IoT
gateway), writes Todos, Boards and Scores items with boto3, and shows every change arriving
with its end-to-end latency (DynamoDB write → stream → publisher Lambda → IoT → client). It
also shows bob refused alice's channel. Exits 0 only if every expected change arrived once
and every refusal happened.
"""

from __future__ import annotations

import functools
import queue
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]

USERS = {"alice": ("alice-pass-2026", "acme"), "bob": ("bob-pass-2026", "globex")}


Inbox = queue.Queue[tuple[str, str, dict[str, Any], float]]


def _collector(inbox: Inbox, who: str) -> Any:
    def collect(change: Any) -> None:
        inbox.put((who, change["channel"], dict(change), time.time()))

    return collect


def run_demo(state_dir: Path | None = None, *, out: Any = print) -> int:
    """Run the scripted session; returns the process exit code."""
    from auth.passwords import hash_password
    from auth.store import UsersStore
    from client_sdk import AccessDenied, ClientOptions, Password, Tidings
    from infra.local.stack.local_stack import LocalStack, StackConfig

    directory = state_dir or Path(tempfile.mkdtemp(prefix="tidings-demo-"))
    config = StackConfig(
        state_dir=directory,
        gateway_port=0,
        api_port=0,
        identity_port=0,
        moto_port=0,
        web_port=0,
        mqtt_port=0,
        credentials_port=0,
        function_log=directory / "functions.log",  # the story on screen, the logs in a file
    )
    failures: list[str] = []
    started = time.time()
    out("Starting the local stack from infra/template.yaml ...")
    with LocalStack(config) as stack:
        out(
            f"  up in {time.time() - started:.1f} s: API {stack.api_url}, "
            f"IoT wss://localhost:{stack.iot_port}/mqtt"
        )
        users = UsersStore(stack.client("dynamodb"), stack.tables["UsersTable"])
        for name, (password, tenant) in USERS.items():
            users.add_user(name, hash_password(password), frozenset({tenant}))
            out(f"  user {name} in tenant {tenant}")
        options = ClientOptions(ca_file=stack.ca_file, cognito_endpoint=stack.identity_url)
        inbox: Inbox = queue.Queue()
        clients: dict[str, Tidings] = {}
        try:
            for name, (password, _tenant) in USERS.items():
                client = Tidings.connect(stack.api_url, Password(name, password), options=options)
                clients[name] = client
                out(f"{name:5} signed in as {client.identity_id} ({client.state})")
            alice, bob = clients["alice"], clients["bob"]
            for who, channel in (
                ("alice", "users/me/todos"),
                ("alice", "tenants/acme/board"),
                ("alice", "public/scores"),
                ("bob", "tenants/globex/board"),
                ("bob", "public/scores"),
            ):
                clients[who].subscribe(channel, _collector(inbox, who))
                out(f"{who:5} subscribed to {channel}")
            try:
                bob.subscribe(f"users/{alice.identity_id}/todos", lambda c: None)
                failures.append("bob was allowed to subscribe to alice's todos")
                out("bob   subscribed to alice's todos: ALLOWED (wrong!)")
            except AccessDenied as exc:
                out(f"bob   subscribe to alice's todos: refused, as it must be ({exc})")
            try:
                bob.subscribe("tenants/acme/board", lambda c: None)
                failures.append("bob was allowed to read tenant acme's board")
            except AccessDenied:
                out("bob   subscribe to tenant acme's board: refused, as it must be")

            dynamodb = stack.client("dynamodb")
            writes = [
                (
                    "TodosTable",
                    {
                        "owner": {"S": alice.identity_id},
                        "id": {"S": "t1"},
                        "title": {"S": "buy milk"},
                    },
                    ["alice"],
                ),
                (
                    "TodosTable",
                    {
                        "owner": {"S": alice.identity_id},
                        "id": {"S": "t1"},
                        "title": {"S": "buy milk"},
                        "done": {"BOOL": True},
                    },
                    ["alice"],
                ),
                (
                    "BoardsTable",
                    {"tenant": {"S": "acme"}, "id": {"S": "b1"}, "text": {"S": "ship v1"}},
                    ["alice"],
                ),
                (
                    "BoardsTable",
                    {"tenant": {"S": "globex"}, "id": {"S": "b1"}, "text": {"S": "hire"}},
                    ["bob"],
                ),
                (
                    "ScoresTable",
                    {"game": {"S": "g1"}, "player": {"S": "bob"}, "score": {"N": "42.10"}},
                    ["alice", "bob"],
                ),
            ]
            out("Writing items with boto3 PutItem ...")
            for table, item, receivers in writes:
                sent = time.time()
                dynamodb.put_item(TableName=stack.tables[table], Item=item)
                for _ in receivers:
                    try:
                        who, channel, change, at = inbox.get(timeout=20)
                    except queue.Empty:
                        failures.append(f"a change on {table} never arrived")
                        out(f"  MISSING change from {table}")
                        continue
                    shown = {k: change[k] for k in ("op", "seq") if k in change}
                    out(
                        f"  {who:5} <- {channel} {shown} new={change.get('new')}  "
                        f"{(at - sent) * 1000:.0f} ms after PutItem"
                    )
                    if who not in receivers:
                        failures.append(f"{who} received a change meant for {receivers}")
            time.sleep(0.5)
            while not inbox.empty():
                who, channel, _change, _at = inbox.get()
                failures.append(f"{who} received an unexpected extra change on {channel}")
        finally:
            for client in clients.values():
                client.close()
    logs = f"(the functions' logs: {config.function_log})"
    if failures:
        out("DEMO FAILED:\n  " + "\n  ".join(failures) + "\n" + logs)
        return 1
    out("Demo OK: every change arrived once, in order; bob was refused alice's channels.")
    out(logs)
    return 0


def _identity_id(stack: Any, name: str, password: str) -> str:
    """Sign ``name`` in with ``POST /v1/login`` (as a page does); its identity id."""
    import json
    import ssl
    import urllib.request

    request = urllib.request.Request(
        stack.api_url.rstrip("/") + "/v1/login",
        data=json.dumps({"method": "password", "username": name, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=stack.ca_file)
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        return str(json.load(answer)["identityId"])


def run_web_demo(
    state_dir: Path | None = None,
    *,
    port: int = 8443,
    duration_s: float | None = None,
    stop: Any = None,
    out: Any = None,
) -> int:
    """``tidings demo --web``: the stack, two users, the demo page, and a change every second.

    The page (``infra/web/``) is served at ``http://127.0.0.1:<port + 4>/`` (free ports when
    ``port`` is 0). Until ``stop`` (a ``threading.Event``) is set or ``duration_s`` has
    passed, it writes in turn a score (``public/scores``), a board note for each tenant and a
    todo for alice, so a signed-in page has something arriving. Returns the exit code.
    """
    import itertools
    import random
    import threading

    from auth.passwords import hash_password
    from auth.store import UsersStore
    from infra.local.stack.local_stack import LocalStack, StackConfig

    if out is None:
        out = functools.partial(print, flush=True)  # a person, or a test, reads it as it comes
    directory = state_dir or Path(tempfile.mkdtemp(prefix="tidings-demo-"))
    ports = [0] * 7 if port == 0 else [port + n for n in range(7)]
    config = StackConfig(
        state_dir=directory.resolve(),
        gateway_port=ports[0],
        api_port=ports[1],
        identity_port=ports[2],
        moto_port=ports[3],
        web_port=ports[4],
        mqtt_port=ports[5],
        credentials_port=ports[6],
        function_log=directory / "functions.log",
    )
    stopped = stop or threading.Event()
    out("Starting the local stack from infra/template.yaml ...")
    with LocalStack(config) as stack:
        users = UsersStore(stack.client("dynamodb"), stack.tables["UsersTable"])
        for name, (password, tenant) in USERS.items():
            users.add_user(name, hash_password(password), frozenset({tenant}))
        alice = _identity_id(stack, "alice", USERS["alice"][0])
        out(f"Open {stack.web_url} and sign in as:")
        for name, (password, tenant) in USERS.items():
            out(f"  {name:5} password {password}  (tenant {tenant})")
        out("The page trusts the API and the gateway only if the browser trusts the local CA")
        out(f"  {stack.ca_file}: see docs/WEB.md. Writing a change every second; Ctrl-C stops.")
        dynamodb = stack.client("dynamodb")
        rng = random.Random()
        players = ("ada", "bob", "cy", "dee")
        writes = itertools.cycle(("score", "board", "todo"))
        deadline = None if duration_s is None else time.monotonic() + duration_s
        item: dict[str, dict[str, Any]]
        for n in itertools.count(1):
            if stopped.wait(1.0) or (deadline is not None and time.monotonic() >= deadline):
                break
            kind = next(writes)
            if kind == "score":
                player = rng.choice(players)
                item = {
                    "game": {"S": "g1"},
                    "player": {"S": player},
                    "score": {"N": str(rng.randint(1, 999))},
                }
                dynamodb.put_item(TableName=stack.tables["ScoresTable"], Item=item)
            elif kind == "board":
                for tenant in ("acme", "globex"):
                    item = {
                        "tenant": {"S": tenant},
                        "id": {"S": f"note{n % 5}"},
                        "text": {"S": f"{tenant} note {n} at {time.strftime('%H:%M:%S')}"},
                    }
                    dynamodb.put_item(TableName=stack.tables["BoardsTable"], Item=item)
            else:
                item = {
                    "owner": {"S": alice},
                    "id": {"S": f"demo{n % 4}"},
                    "title": {"S": f"written by the demo at {time.strftime('%H:%M:%S')}"},
                    "done": {"BOOL": n % 2 == 0},
                }
                dynamodb.put_item(TableName=stack.tables["TodosTable"], Item=item)
        out("stopping ...")
    return 0
