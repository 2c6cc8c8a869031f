"""``mnist-lambda tune``: offline power tuning of MemorySize on the local stack.

For each MemorySize the function is redeployed on a local stack whose sandbox enforces the
memory limit and Lambda's CPU share (MemorySize / 1,769 of a vCPU), then called once cold and
``--warm`` times warm on the same request (``--rows`` rows of the run's held-out digits). The
result: cold start, warm p50/p95 duration, peak memory and the cost of a million predictions
per setting (x86_64 and arm64), every answer checked against the model's own predictions, and a
recommendation by a stated rule: the cheapest setting whose warm p50 is within 10 % of the
fastest's. ``--variant ours,tutorial`` (the default) sweeps the tutorial's deployment too
(scikit-learn k-NN from joblib), over the same sizes plus its own 5,000 MB; ``--variant ours``
alone takes about a minute. Written: ``tune.json`` and ``tune.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda.commands.options import add_verbosity, log_verbosely
from mnist_lambda.template import AUTH_TYPES, TEMPLATE_NAME, template_path
from mnist_lambda.template.edit import TemplateEditError, set_memory_default
from mnist_lambda.tuning import report
from mnist_lambda.tuning import tune as tuning  # tuning.tune(): looked up where tests stub it
from mnist_lambda.tuning.traffic import report as traffic_report
from mnist_lambda.tuning.tune import (
    DEFAULT_MEMORY,
    DEFAULT_ROWS,
    DEFAULT_TRAFFIC_DURATION_S,
    DEFAULT_WARM,
    TuneError,
    parse_memory,
)
from mnist_lambda.tuning.variants import VARIANTS

HELP = "sweep MemorySize on the local stack: duration, cost, a recommendation"
EXAMPLES = """examples:
  mnist-lambda tune                                  # latest run, ours and the tutorial's
  mnist-lambda tune --variant ours --memory 512,1769,3008 --warm 5
  mnist-lambda tune --run outputs/my-run --apply     # and set the template's MemorySize default
  mnist-lambda tune --variant ours --traffic 2,8 --duration 20   # + the traffic what-if
  mnist-lambda tune --variant ours --snapstart       # + cold starts with emulated SnapStart
"""
DEFAULT_VARIANTS = "ours,tutorial"


def _memory(text: str) -> tuple[int, ...]:
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names or set(names) - set(VARIANTS):
        raise argparse.ArgumentTypeError(f"choose among {', '.join(VARIANTS)}, got {text!r}")
    return names


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates per second, comma-separated: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``mnist-lambda tune`` options."""
    _add_input_arguments(p)
    _add_sweep_arguments(p)
    results = p.add_argument_group("results")
    results.add_argument(
        "--out", type=Path, metavar="DIR", help="results folder (default: <run>/tune)"
    )
    results.add_argument(
        "--apply",
        action="store_true",
        help="write the recommended MemorySize as the template's MemorySize default",
    )
    results.add_argument(
        "--template",
        type=Path,
        default=None,
        help=f"the SAM template --apply edits (default: {TEMPLATE_NAME})",
    )
    add_verbosity(
        p,
        quiet="no progress lines",
        verbose="also the sweep's settings (model, rows, prices, how durations are measured)",
    )


def _add_input_arguments(p: argparse.ArgumentParser) -> None:
    """What is deployed and called."""
    group = p.add_argument_group("model and rows")
    group.add_argument(
        "--run",
        type=Path,
        metavar="DIR",
        help="run folder with model/ and data/ (default: the latest under outputs/)",
    )
    group.add_argument("--model", type=Path, help="a serving model .npz instead of the run's")
    group.add_argument(
        "--pixels", type=Path, help="an .npy of (n, 784) uint8 rows instead of the run's X_test"
    )
    group.add_argument(
        "--variant",
        type=_variants,
        default=_variants(DEFAULT_VARIANTS),
        metavar="LIST",
        help=f"ours, tutorial or both (default {DEFAULT_VARIANTS}; the tutorial's is slower)",
    )


def _add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """What is measured: the MemorySize sweep, SnapStart, the traffic what-if."""
    group = p.add_argument_group("measurements")
    memory = ",".join(map(str, DEFAULT_MEMORY))
    group.add_argument(
        "--memory",
        type=_memory,
        default=DEFAULT_MEMORY,
        metavar="LIST",
        help=f"MemorySize values to sweep, MB, comma-separated (default {memory})",
    )
    group.add_argument(
        "--warm",
        type=_positive,
        default=DEFAULT_WARM,
        metavar="N",
        help=f"warm calls per setting (default {DEFAULT_WARM})",
    )
    group.add_argument(
        "--rows",
        type=_positive,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"rows per request (default {DEFAULT_ROWS:,}; repeated if the data has fewer)",
    )
    group.add_argument(
        "--snapstart",
        action="store_true",
        help="also a cold start at each setting with SnapStart on (the local stack's emulated "
        "restore), beside the ordinary one",
    )
    group.add_argument(
        "--traffic",
        type=_rates,
        metavar="RATE[,RATE...]",
        help="after the sweep, the traffic what-if at these request rates (per second) at the "
        "recommended MemorySize (mnist_lambda.tuning.traffic)",
    )
    group.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_TRAFFIC_DURATION_S,
        metavar="S",
        help=f"seconds of traffic per rate (default {DEFAULT_TRAFFIC_DURATION_S:g})",
    )
    group.add_argument(
        "--auth",
        choices=tuple(AUTH_TYPES),
        default="none",
        help="ours behind template.yaml with this auth (iam: SigV4, api_key: x-api-key), "
        "called as the stack's own caller (default: none, template_no_auth.yaml)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the sweep; print the table and the recommendation; ``--apply`` it if asked."""
    if args.verbose:
        log_verbosely()
    template = args.template or template_path()
    if args.apply and not template.is_file():
        print(f"error: no template {template} to apply to", file=sys.stderr)
        return 2
    try:
        pixels = np.load(args.pixels, allow_pickle=False) if args.pixels else None
        doc = tuning.tune(
            args.run,
            out=args.out,
            model_path=args.model,
            pixels=pixels,
            memory=args.memory,
            warm=args.warm,
            rows=args.rows,
            variant_names=args.variant,
            traffic_rates=args.traffic or (),
            traffic_duration_s=args.duration,
            snapstart=args.snapstart,
            progress=not args.quiet,
            auth=args.auth,
        )
    except (TuneError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_results(doc, settings=args.verbose)
    recommended = (doc.get("recommendation") or {}).get("memory_mb")
    if args.apply:
        if recommended is None:
            print("error: nothing to apply (no recommendation)", file=sys.stderr)
            return 1
        try:
            old = set_memory_default(template, recommended)
        except (TemplateEditError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"applied: MemorySize default {old} -> {recommended} MB in {template}")
    return 0 if recommended is not None else 1


def _print_results(doc: dict[str, Any], *, settings: bool) -> None:
    """The tables, the recommendation and where the files went (and the settings if asked)."""
    if settings:
        print(f"settings: {json.dumps(doc['settings'], indent=2, default=str)}")
    print(report.table_text(doc))
    print(report.recommendation_text(doc))
    if "traffic" in doc:
        print(traffic_report.table(doc["traffic"]))
    print(f"results: {doc['paths']['tune_json']}")
    print(f"figure:  {doc['paths']['figure']}")
    if "traffic_figure" in doc["paths"]:
        print(f"traffic: {doc['paths']['traffic_figure']}")
