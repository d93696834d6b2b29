"""``tidings cost``: what a workload costs a month, pushed over AWS IoT Core or polled.

The edge around :mod:`infra.cost` (the pure model): it reads the workload from the command
line and ``--workload FILE.yaml``, the prices from ``infra/prices.yaml`` and the functions'
memory and limits from ``infra/template.yaml``, then prints a table (or ``--json``) and, with
``--plot FILE.png``, draws cost against poll interval with matplotlib (imported only then).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from infra.cost import (
    MONTH_HOURS,
    CostModelError,
    Deployment,
    Estimate,
    OptionCost,
    PriceBook,
    Workload,
    estimate,
    poll_curve,
)
from infra.data_files import PRICES, TEMPLATE, data_file

__all__ = [
    "COST_DESCRIPTION",
    "CostCommandError",
    "add_cost_parser",
    "load_prices",
    "load_workload_file",
    "read_deployment",
    "render_table",
    "run_cost",
    "to_json",
    "write_plot",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PLOT_RANGE_S = (1.0, 3600.0)
"""The poll intervals the plot spans at least (widened to show the break-even)."""

COST_DESCRIPTION = """\
Print what a workload costs a month, at AWS list prices: push over AWS IoT Core (connection
minutes, messages in 5 KB units, the publisher's publishes), the long-poll fallback through
API Gateway and Lambda (requests, every waiting second of Lambda at the template's memory,
DynamoDB reads), a short poll every POLL_INTERVAL seconds (through Lambda, or through API
Gateway's DynamoDB integration, which Tidings does not build), the publisher's share, and the
same workload on AppSync Events and API Gateway WebSocket APIs. It names the cheapest option
and the break-even poll interval, and warns where the workload runs into a limit. Give the
workload with the options below or in a YAML file (--workload), whose keys are the options'
names with underscores (clients, connected_hours, changes_per_s, subscribers_per_change,
poll_interval_s, region) and the model's assumptions (docs/COST.md); options win over the
file. Prices come from the price list tidings ships (infra/prices.yaml), with the date they
were read."""


class CostCommandError(Exception):
    """A file the command cannot use; the message says which and why."""


def add_cost_parser(commands: Any, *, epilog: str | None = None) -> None:
    """Register ``cost`` on the ``tidings`` subparsers object."""
    cost = commands.add_parser(
        "cost",
        help="what a workload costs a month: push over AWS IoT Core or polling, and others",
        description=COST_DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cost.add_argument(
        "--clients", type=int, metavar="N", help="clients that use the app (browsers, devices)"
    )
    cost.add_argument(
        "--connected-hours",
        type=float,
        metavar="H",
        help="hours a day each client is connected, 0 to 24",
    )
    cost.add_argument(
        "--changes-per-s",
        type=float,
        metavar="R",
        help="channel changes a second, all channels together",
    )
    cost.add_argument(
        "--subscribers-per-change",
        type=float,
        metavar="S",
        help="connected clients each change goes to, on average",
    )
    cost.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="the interval of the short poll to compare with, in seconds",
    )
    cost.add_argument(
        "--region", default=None, help="the AWS region whose prices to use (default us-east-1)"
    )
    cost.add_argument(
        "--workload",
        type=Path,
        metavar="FILE",
        help="a YAML file with the workload (and any of the model's assumptions)",
    )
    cost.add_argument(
        "--json", action="store_true", help="print the estimate as JSON instead of a table"
    )
    cost.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="also draw monthly cost against poll interval into this PNG file (needs "
        "matplotlib: pip install 'tidings[deploy]')",
    )
    cost.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="a price list to use instead of the one tidings ships",
    )
    cost.add_argument(
        "--template",
        type=Path,
        metavar="FILE",
        help="read the functions' memory and limits from this template instead of the "
        "one tidings ships",
    )


_FLAGS = {
    "clients": "clients",
    "connected_hours": "connected_hours",
    "changes_per_s": "changes_per_s",
    "subscribers_per_change": "subscribers_per_change",
    "poll_interval": "poll_interval_s",
}


def run_cost(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run ``tidings cost``; returns the exit status (errors go to stderr as one line)."""
    stdout = out if out is not None else sys.stdout
    try:
        values: dict[str, Any] = {}
        if args.workload is not None:
            values.update(load_workload_file(args.workload))
        region = str(values.pop("region", None) or "us-east-1")
        if args.region:
            region = args.region
        for flag, name in _FLAGS.items():
            given = getattr(args, flag)
            if given is not None:
                values[name] = given
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(Workload)})
        if unknown:
            Workload.from_mapping(values)  # names the unknown fields
        missing = [
            f"--{flag.replace('_', '-')}" for flag, name in _FLAGS.items() if name not in values
        ]
        if missing:
            raise CostModelError(
                f"the workload needs {', '.join(missing)} (as options or in --workload FILE)"
            )
        workload = Workload.from_mapping(values)
    except (CostModelError, CostCommandError, TypeError) as exc:
        print(f"tidings cost: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        prices = load_prices(region, args.prices)
        deployment = read_deployment(args.template)
        result = estimate(workload, prices, deployment)
        if args.json:
            json.dump(to_json(result), stdout, indent=2)
            print(file=stdout)
        else:
            print(render_table(result), file=stdout)
        if args.plot is not None:
            write_plot(result, prices, args.plot)
            if not args.json:
                print(f"\nplot written to {args.plot}", file=stdout)
    except (CostModelError, CostCommandError) as exc:
        print(f"tidings cost: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# ------------------------------------------------------------------------------- inputs
def load_workload_file(path: Path) -> dict[str, Any]:
    """The workload file's mapping (field names of :class:`~infra.cost.Workload`, and
    ``region``)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CostCommandError(f"cannot read the workload file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CostCommandError(f"the workload file {path} is not YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise CostCommandError(f"the workload file {path} must be a mapping of names to values")
    return {str(key): value for key, value in document.items()}


def load_prices(region: str, path: Path | None = None) -> PriceBook:
    """The price book of ``region`` from ``path`` (default: the price list tidings ships)."""
    path = path if path is not None else data_file(PRICES)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CostCommandError(f"cannot read the price list {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CostCommandError(f"the price list {path} is not YAML: {exc}") from exc
    try:
        return PriceBook.from_document(document, region)
    except CostModelError as exc:
        raise CostCommandError(f"{path}: {exc}") from exc


class _TemplateLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short-form tags (!Ref, !Sub, ...) as plain
    values: the cost model needs only literal properties."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {f"!{suffix}": loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {f"!{suffix}": loader.construct_sequence(node, deep=True)}
    return {f"!{suffix}": loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


yaml.add_multi_constructor("!", _any_tag, Loader=_TemplateLoader)


def read_deployment(path: Path | None = None) -> Deployment:
    """The publisher's and the channels function's memory, architecture and limits, and the
    API's kind, as the template (default: the one tidings ships) sets them."""
    path = path if path is not None else data_file(TEMPLATE)
    try:
        body = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise CostCommandError(f"cannot read the template {path}: {exc}") from exc
    resources = body.get("Resources") if isinstance(body, Mapping) else None
    if not isinstance(resources, Mapping):
        raise CostCommandError(f"the template {path} has no Resources")
    parameters = body.get("Parameters") or {}
    functions = {
        name: resource.get("Properties") or {}
        for name, resource in resources.items()
        if isinstance(resource, Mapping) and resource.get("Type") == "AWS::Lambda::Function"
    }
    publisher = _function(functions, "publisher_handler", path)
    channels = _function(functions, "channels_handler", path)
    settings: dict[str, Any] = {
        "publisher_memory_mb": int(publisher.get("MemorySize", 128)),
        "publisher_architecture": (publisher.get("Architectures") or ["x86_64"])[0],
        "channels_memory_mb": int(channels.get("MemorySize", 128)),
        "channels_architecture": (channels.get("Architectures") or ["x86_64"])[0],
    }
    reserved = _literal(channels.get("ReservedConcurrentExecutions"), parameters)
    if reserved is not None:
        settings["channels_concurrency"] = int(reserved)
    for resource in resources.values():
        if isinstance(resource, Mapping) and resource.get("Type") == (
            "AWS::Lambda::EventSourceMapping"
        ):
            mapping = resource.get("Properties") or {}
            settings["stream_batch_size"] = int(mapping.get("BatchSize", 100))
            settings["parallelization_factor"] = int(mapping.get("ParallelizationFactor", 1))
            break
    kinds = {
        resource.get("Type") for resource in resources.values() if isinstance(resource, Mapping)
    }
    settings["api"] = "rest" if "AWS::ApiGateway::RestApi" in kinds else "http"
    try:
        return Deployment(**settings)
    except CostModelError as exc:
        raise CostCommandError(f"the template {path}: {exc}") from exc


def _function(functions: Mapping[str, Any], handler: str, path: Path) -> Mapping[str, Any]:
    for properties in functions.values():
        if handler in str(properties.get("Handler", "")):
            return properties  # type: ignore[no-any-return]
    raise CostCommandError(f"the template {path} has no function with a {handler} handler")


def _literal(value: Any, parameters: Mapping[str, Any]) -> Any:
    """A property's value: a literal, or the default of the parameter a !Ref names."""
    if isinstance(value, Mapping) and "!Ref" in value:
        return (parameters.get(value["!Ref"]) or {}).get("Default")
    return value


# ------------------------------------------------------------------------------ outputs
def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value:,.0f} s ({value / 3600:.1f} h)"
    if value >= 60:
        return f"{value:,.0f} s ({value / 60:.1f} min)"
    return f"{value:.3g} s"


def render_table(result: Estimate) -> str:
    """The estimate as the table ``tidings cost`` prints (lines of at most 100 characters)."""
    w = result.workload
    lines = _wrap(
        f"Monthly cost at {result.region} list prices read {result.prices_read_on} "
        f"({PRICES}, a {MONTH_HOURS:g}-hour month) of {w.clients:,} clients connected "
        f"{w.connected_hours:g} h a day ({w.connected_clients:,.0f} at once on average), "
        f"{w.changes_per_s:g} changes/s to {w.subscribers_per_change:g} subscribers each, "
        f"{w.envelope_bytes:,}-byte changes:",
        "",
    )
    lines.append("")
    lines += _block(result.publisher, result.publisher.usd, result.publisher.note)
    lines += ["", "each option, a month, with the publisher's share:"]
    for option in result.options:
        lines += _block(option, result.total(option.key), option.note)
    cheapest = result.cheapest
    push, long_poll = result.total("push-iot"), result.total("long-poll")
    lines.append("")
    lines += _wrap(f"cheapest: {cheapest.name}, {_usd(result.total(cheapest.key))} a month", "")
    lines += _wrap(
        f"push or poll: push over AWS IoT Core costs {_usd(push)} a month, the long-poll "
        f"through Lambda {_usd(long_poll)} ({_ratio(long_poll, push)})",
        "  ",
    )
    for found in result.break_even:
        label = "through Lambda" if found.option == "short-poll" else "API Gateway -> DynamoDB"
        where = "none" if found.interval_s is None else _seconds(found.interval_s)
        lines += _wrap(f"break-even poll interval, {label}: {where}: {found.note}", "  ")
    if result.warnings:
        lines += ["", "warnings:"]
        for warning in result.warnings:
            lines += _wrap(f"  ! {warning}", "    ")
    if result.notes:
        lines += ["", "notes:"]
        for note in result.notes:
            lines += _wrap(f"  - {note}", "    ")
    return "\n".join(lines)


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=100, subsequent_indent=indent, break_on_hyphens=False)


def _ratio(value: float, base: float) -> str:
    if base <= 0:
        return "push costs nothing here"
    times = value / base
    return f"{times:,.1f} times as much" if times >= 1 else f"{1 / times:,.1f} times less"


def _block(option: OptionCost, total: float, note: str) -> list[str]:
    lines = [f"{option.name:<84}{_usd(total):>16}"]
    for item in option.items:
        lines.append(
            f"    {item.what:<40}{item.quantity:>17,.0f} {item.unit:<26}{_usd(item.usd):>12}"
        )
    if note:
        lines += _wrap(f"    ({note})", "     ")
    return lines


def to_json(result: Estimate) -> dict[str, Any]:
    """The estimate as the JSON ``tidings cost --json`` prints."""

    def option(cost: OptionCost) -> dict[str, Any]:
        return {
            "key": cost.key,
            "name": cost.name,
            "usd": cost.usd,
            "note": cost.note,
            "items": [dataclasses.asdict(item) for item in cost.items],
        }

    return {
        "region": result.region,
        "prices_read_on": result.prices_read_on,
        "month_hours": MONTH_HOURS,
        "workload": dataclasses.asdict(result.workload),
        "deployment": dataclasses.asdict(result.deployment),
        "publisher": option(result.publisher),
        "options": [
            {**option(cost), "total_usd": result.total(cost.key)} for cost in result.options
        ],
        "cheapest": result.cheapest.key,
        "break_even": [dataclasses.asdict(found) for found in result.break_even],
        "warnings": list(result.warnings),
        "notes": list(result.notes),
    }


_STYLE = {
    "push-iot": ("push: AWS IoT Core (Tidings)", "-", 2.5),
    "long-poll": ("long-poll through Lambda (Tidings)", "--", 1.5),
    "short-poll": ("short poll through Lambda", "-", 2.5),
    "short-poll-dynamodb": ("short poll, API Gateway -> DynamoDB (model only)", ":", 1.5),
    "push-appsync": ("push: AppSync Events", "-.", 1.2),
    "push-apigw-websocket": ("push: API Gateway WebSocket", "-.", 1.2),
}


def write_plot(result: Estimate, prices: PriceBook, path: Path) -> None:
    """Draw monthly cost against poll interval into the PNG ``path``: the push options and
    the long-poll flat, the short polls falling, the break-even marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise CostCommandError(
            "--plot needs matplotlib: pip install 'tidings[deploy]' (or pip install matplotlib)"
        ) from exc
    low, high = PLOT_RANGE_S
    crossing = result.break_even[0].interval_s
    if crossing is not None:
        low, high = min(low, crossing / 10), max(high, crossing * 10)
    count = 200
    intervals = [low * (high / low) ** (i / (count - 1)) for i in range(count)]
    curves = poll_curve(result.workload, prices, result.deployment, intervals)
    figure, axes = plt.subplots(figsize=(10, 6), dpi=100)
    try:
        for key, (label, style, width) in _STYLE.items():
            axes.plot(intervals, curves[key], style, linewidth=width, label=label)
        if crossing is not None:
            cost = result.total("push-iot")
            axes.axvline(crossing, color="grey", linestyle=":", linewidth=1)
            axes.plot([crossing], [cost], "o", color="black")
            axes.annotate(
                f"break-even: poll every {_seconds(crossing)}",
                (crossing, cost),
                textcoords="offset points",
                xytext=(8, 12),
            )
        axes.set_xscale("log")
        if all(value > 0 for values in curves.values() for value in values):
            axes.set_yscale("log")
        axes.set_xlabel("short-poll interval (seconds)")
        axes.set_ylabel("USD a month, with the publisher's share")
        w = result.workload
        axes.set_title(
            f"{w.clients:,} clients, {w.connected_hours:g} h/day, {w.changes_per_s:g} changes/s, "
            f"{w.subscribers_per_change:g} subscribers each ({result.region}, prices of "
            f"{result.prices_read_on})",
            fontsize=10,
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        try:
            figure.savefig(path, format="png")
        except OSError as exc:
            raise CostCommandError(f"cannot write the plot {path}: {exc.strerror}") from exc
    finally:
        plt.close(figure)
