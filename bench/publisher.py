"""Publisher benchmark: records/s through the publisher for 100-record stream batches.

Measured side by side in one run:

* **the publisher** (``backend.publisher.Publisher``: route, number and log every change in
  DynamoDB transactions, publish QoS 1 through ``backend.iot_publish.SignedPublishClient``, as
  in production) on 100-record batches, with the iot-data endpoint adding a round trip of
  ``--rtt-ms`` (20 ms by default, as AWS does); also with a boto3 ``iot-data`` client
  (``batch100_boto3_iot_ms``) and with moto as DynamoDB (``batch100_on_moto_ms``);
* **a plain sequential publish loop**: the same 100 envelopes published one after another with
  the same boto3 client (no sequence numbers, no change log), as a naive publisher would;
* **cold import** of the publisher's Lambda handler module next to ``import boto3`` alone, each
  in fresh interpreters, interleaved, median of ``--imports`` runs.

Batch shapes (the publisher keeps each channel's order, so a channel's changes are published one
after another; channels go concurrently): ``spread`` (the headline ``batch100_ms``) = 100 changes
by 100 users, each on its own channel, as a busy table's shard delivers them; ``10ch`` = 10
channels of 10 changes; ``1ch`` = one hot channel (necessarily ~100 round trips).

DynamoDB is :class:`ModelledDynamoDB` (in memory, AWS-like latencies: 5 ms per read,
10 ms + 0.2 ms per action per transaction) for the headline figures, because moto spends
~1.5 ms of CPU per transaction action and would measure itself; ``batch100_on_moto_ms`` shows
that case. moto (fresh tables per batch) and the iot-data endpoint (a small HTTP server that
answers every Publish after ``--rtt-ms``) run in their own processes so that their CPU is not
the publisher's.

Usage: ``.venv/bin/python bench/publisher.py [--batches 8] [--rtt-ms 20]``; writes
``bench/results/publisher.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_report  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "publisher.json"
REGION = "us-east-1"


# ------------------------------------------------------------------- the slow iot-data endpoint
def serve_iot(port: int, rtt_ms: float) -> None:
    """An iot-data Publish endpoint (``POST /topics/<topic>``) that answers after ``rtt_ms``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            time.sleep(rtt_ms / 1000)
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.request_queue_size = 256
    server.serve_forever()


def serve_moto(port: int) -> None:
    """moto in server mode with the local stack's TransactWriteItems fix
    (``infra/local/motohost/fixes/transactions.py``: no whole-table copies, serialised
    transactions)."""
    import logging

    from moto.server import ThreadedMotoServer

    from infra.local.motohost.fixes.transactions import apply_dynamodb_transaction_fixes

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    apply_dynamodb_transaction_fixes()  # the local stack's moto, as `tidings up` runs it
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    threading.Event().wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# ------------------------------------------------------------------ DynamoDB with AWS-like latency
class ModelledDynamoDB:
    """The calls ``ChangeStore`` makes, in memory, each answering after an AWS-like latency.

    Reads (BatchGetItem) take ``read_ms``; TransactWriteItems takes ``write_ms`` plus
    ``per_action_ms`` per action. Conditions are evaluated as DynamoDB would for the expressions
    ChangeStore sends, so a conflict cancels the transaction.
    """

    def __init__(
        self, read_ms: float = 5.0, write_ms: float = 10.0, per_action_ms: float = 0.2
    ) -> None:
        self.read_ms, self.write_ms, self.per_action_ms = read_ms, write_ms, per_action_ms
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.lock = threading.Lock()

    @staticmethod
    def _key(item: dict[str, Any]) -> str:
        return json.dumps(
            {k: item[k] for k in ("pk", "channel", "seq") if k in item}, sort_keys=True
        )

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.read_ms / 1000)
        with self.lock:
            return {
                "Responses": {
                    table: [
                        found
                        for key in request["Keys"]
                        if (found := self.tables.get(table, {}).get(self._key(key))) is not None
                    ]
                    for table, request in RequestItems.items()
                }
            }

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        time.sleep((self.write_ms + self.per_action_ms * len(TransactItems)) / 1000)
        with self.lock:
            for action in TransactItems:
                ((kind, body),) = action.items()
                table = self.tables.setdefault(body["TableName"], {})
                current = table.get(self._key(body.get("Key") or body.get("Item")))
                condition = body.get("ConditionExpression", "")
                values = body.get("ExpressionAttributeValues", {})
                ok = (
                    current is None
                    if condition.startswith("attribute_not_exists")
                    else current is not None and current["head"] == values[":expected"]
                )
                if not ok:
                    raise ClientError(
                        {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}},
                        "TransactWriteItems",
                    )
            for action in TransactItems:
                ((kind, body),) = action.items()
                table = self.tables[body["TableName"]]
                if kind == "Put":
                    table[self._key(body["Item"])] = body["Item"]
                else:
                    values = body["ExpressionAttributeValues"]
                    table[self._key(body["Key"])] = {
                        **body["Key"],
                        "head": values[":new"],
                        "epoch": values[":epoch"],
                    }
        return {}


# ------------------------------------------------------------------------------- the batches
def todo_record(owner: str, item: str, index: int, table_arn: str) -> dict[str, Any]:
    """A Lambda-shaped INSERT stream record of the example Todos table."""
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "eventSourceARN": table_arn,
        "dynamodb": {
            "ApproximateCreationDateTime": int(time.time()),
            "Keys": {"owner": {"S": owner}, "id": {"S": item}},
            "NewImage": {
                "owner": {"S": owner},
                "id": {"S": item},
                "title": {"S": f"todo number {index}"},
                "done": {"BOOL": False},
                "price": {"N": "12.34"},
            },
            "SequenceNumber": str(10**20 + index),
            "SizeBytes": 200,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def batch(shape: str) -> list[dict[str, Any]]:
    channels = {"spread": 100, "10ch": 10, "1ch": 1}[shape]
    owners = [f"{REGION}:{uuid.uuid4()}" for _ in range(channels)]
    arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/Todos/stream/2024-01-01T00:00:00.000"
    return [todo_record(owners[i % channels], f"item-{i}", i, arn) for i in range(100)]


def create_tables(dynamodb: Any) -> tuple[str, str]:
    """A change log and a sequence table, defined as ``infra/template.yaml`` defines them."""
    from infra.local.stack.template_model import load_template

    suffix = uuid.uuid4().hex[:8]
    log, seq = f"bench-log-{suffix}", f"bench-seq-{suffix}"
    template = load_template(ROOT / "infra" / "template.yaml")
    template.create_table(dynamodb, "ChangeLogTable", log)
    template.create_table(dynamodb, "SequenceTable", seq)
    return log, seq


# ------------------------------------------------------------------------------ measurements
def measure_publisher(
    moto_url: str | None, iot_url: str, shape: str, batches: int, iot_client: str = "signed"
) -> list[float]:
    """Milliseconds per 100-record batch; DynamoDB is moto at ``moto_url`` or, when None,
    :class:`ModelledDynamoDB`; iot-data is the production ``SignedPublishClient`` or, with
    ``iot_client="boto3"``, a boto3 iot-data client."""
    import boto3
    from botocore.config import Config
    from botocore.credentials import Credentials

    from backend.change_store import ChangeStore
    from backend.iot_publish import SignedPublishClient
    from backend.publisher import Publisher
    from backend.routes import load_routes
    from backend.settings import Settings

    credentials = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
    config = Config(  # as backend.aws_clients builds them
        max_pool_connections=64, retries={"mode": "standard"}, parameter_validation=False
    )
    dynamodb: Any = ModelledDynamoDB()
    if moto_url is not None:
        dynamodb = boto3.client(
            "dynamodb", endpoint_url=moto_url, region_name=REGION, config=config, **credentials
        )
    iot: Any = SignedPublishClient(iot_url, REGION, Credentials("bench", "bench"), pool_size=64)
    if iot_client == "boto3":
        iot = boto3.client(
            "iot-data", endpoint_url=iot_url, region_name=REGION, config=config, **credentials
        )
    routes = load_routes(ROOT / "infra" / "routes.yaml")
    executor = ThreadPoolExecutor(64, thread_name_prefix="tidings")
    timings = []
    for index in range(batches + 1):  # the first batch warms connections and is not counted
        log, seq = create_tables(dynamodb) if moto_url else ("log", "seq")
        if moto_url is None:
            dynamodb.tables.clear()
        settings = Settings(
            stage="bench",
            change_log_table=log,
            sequence_table=seq,
            routes_file=str(ROOT / "infra" / "routes.yaml"),
            tables={
                "TODOSTABLE": "Todos",
                "BOARDSTABLE": "Boards",
                "SCORESTABLE": "Scores",
                "DEVICESETTINGSTABLE": "DeviceSettings",
            },
        )
        store = ChangeStore(dynamodb, seq, log, settings.retention_s, executor=executor)
        publisher = Publisher(settings, routes, store, iot, executor=executor)
        records = batch(shape)
        started = time.perf_counter()
        answer = publisher.handle({"Records": records})
        elapsed = (time.perf_counter() - started) * 1000
        if answer["batchItemFailures"]:
            raise RuntimeError(f"the benchmark batch failed: {answer}")
        if index:
            timings.append(elapsed)
    executor.shutdown()
    return timings


def measure_sequential(iot_url: str, batches: int) -> list[float]:
    import boto3

    from backend.changes import Router, decode_record, encode_envelope
    from backend.routes import load_routes

    iot = boto3.client(
        "iot-data",
        endpoint_url=iot_url,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    router = Router(
        load_routes(ROOT / "infra" / "routes.yaml"),
        {
            "TodosTable": "Todos",
            "BoardsTable": "Boards",
            "ScoresTable": "Scores",
            "DeviceSettingsTable": "DeviceSettings",
        },
    )
    timings = []
    for index in range(batches + 1):
        records = batch("spread")
        started = time.perf_counter()
        for position, record in enumerate(records):
            for item in router.route(position, decode_record(record)):
                payload = encode_envelope(item, 1, 1, 128 * 1024).published
                iot.publish(topic=f"tidings/bench/{item.channel}", qos=1, payload=payload)
        if index:
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def import_ms(statement: str) -> float:
    code = (
        f"import time; t = time.perf_counter(); {statement}; "
        "print((time.perf_counter() - t) * 1000)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return float(result.stdout.strip())


def measure_imports(runs: int) -> tuple[float, float]:
    handler, boto3_alone = [], []
    for _ in range(runs):  # interleaved, so that machine load hits both alike
        boto3_alone.append(import_ms("import boto3"))
        handler.append(import_ms("import backend.publisher_handler"))
    return statistics.median(handler), statistics.median(boto3_alone)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 batches, 3 imports")
    parser.add_argument("--batches", type=int, help="batches per shape (8; quick 2)")
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--imports", type=int, help="import timings (9; quick 3)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--serve-iot", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-moto", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batches = args.batches or (2 if args.quick else 8)
    args.imports = args.imports or (3 if args.quick else 9)
    if args.serve_iot:
        serve_iot(args.serve_iot, args.rtt_ms)
        return 0
    if args.serve_moto:
        serve_moto(args.serve_moto)
        return 0

    moto_port, iot_port = free_port(), free_port()
    processes = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "moto_server"),
                "-H",
                "127.0.0.1",
                "-p",
                str(moto_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, __file__, "--serve-iot", str(iot_port), "--rtt-ms", str(args.rtt_ms)]
        ),
    ]
    try:
        wait_for_port(moto_port)
        wait_for_port(iot_port)
        moto_url, iot_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{iot_port}"
        shapes = {
            shape: measure_publisher(None, iot_url, shape, args.batches)
            for shape in ("spread", "10ch", "1ch")
        }
        with_boto3 = measure_publisher(None, iot_url, "spread", args.batches, "boto3")
        on_moto = measure_publisher(moto_url, iot_url, "spread", max(3, args.batches // 2))
        sequential = measure_sequential(iot_url, max(3, args.batches // 2))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
    handler_import, boto3_import = measure_imports(args.imports)

    batch_ms = statistics.median(shapes["spread"])
    sequential_ms = statistics.median(sequential)
    result = {
        "rtt_ms": args.rtt_ms,
        "batches": args.batches,
        "batch100_ms": round(batch_ms, 1),
        "batch100_p90_ms": round(
            sorted(shapes["spread"])[int(0.9 * (len(shapes["spread"]) - 1))], 1
        ),
        "records_per_s": round(100 / batch_ms * 1000),
        "batch100_10ch_ms": round(statistics.median(shapes["10ch"]), 1),
        "batch100_1ch_ms": round(statistics.median(shapes["1ch"]), 1),
        "batch100_boto3_iot_ms": round(statistics.median(with_boto3), 1),
        "batch100_on_moto_ms": round(statistics.median(on_moto), 1),
        "sequential_batch100_ms": round(sequential_ms, 1),
        "sequential_records_per_s": round(100 / sequential_ms * 1000),
        "speedup_vs_sequential": round(sequential_ms / batch_ms, 1),
        "import_ms": round(handler_import, 1),
        "boto3_import_ms": round(boto3_import, 1),
        "import_ratio": round(handler_import / boto3_import, 2),
        "goals": {
            "batch100_ms_le_150": batch_ms <= 150,
            "speedup_ge_10": sequential_ms / batch_ms >= 10,
            "import_ratio_le_1_3": handler_import / boto3_import <= 1.3,
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_report(result, args.output)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
