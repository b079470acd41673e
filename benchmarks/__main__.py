"""``python -m benchmarks [--quick] [--only NAME[,NAME]] [--json PATH]``: see benchmarks/README.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
import time
from pathlib import Path

from . import WORKLOADS
from .core import FAILED, Settings, Workload, as_json, machine, machine_line, table

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tinyml's benchmark suite: every workload, peers side by side, ratios to tinyml.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="run every workload tiny and check each implementation's result (for CI; no time asserted)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these workloads (comma-separated or repeated): {', '.join(WORKLOADS)}",
    )
    p.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="write the JSON results here (default: benchmarks/results/<UTC time>-<mode>.json)",
    )
    p.add_argument("--repeats", type=int, metavar="N", help="timed repeats of each measurement (3; quick: 1)")
    args = p.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    args.only = names or list(WORKLOADS)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = Settings(quick=args.quick, repeats=args.repeats or (1 if args.quick else 3))
    info = machine()
    started = dt.datetime.now(dt.timezone.utc)
    print(f"machine: {machine_line(info)}")
    print(f"mode: {'quick' if args.quick else 'full'}, {settings.repeats} timed repeat(s), medians shown\n")
    results: list[Workload] = []
    for name in args.only:
        t0 = time.perf_counter()
        module = importlib.import_module(f".{WORKLOADS[name]}", __package__)
        out = module.run(settings)
        tables = out if isinstance(out, list) else [out]
        for workload in tables:
            print(table(workload), flush=True)
        tables[-1].extra["wall_seconds"] = seconds = time.perf_counter() - t0
        print(f"  ({name}: {seconds:.1f} s)\n", flush=True)
        results.extend(tables)
    failed = [f"{w.key}: {e.name}" for w in results for e in w.entries if e.failed]
    report = {
        "suite": "tinyml benchmarks",
        "mode": "quick" if args.quick else "full",
        "repeats": settings.repeats,
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(
            [sys.executable, "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": info,
        "machine_line": machine_line(info),
        "workloads": [as_json(w) for w in results],
        "failed": failed,
    }
    path = args.json or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{report['mode']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf-8")
    print(f"results written to {path}")
    if failed:
        print(f"{FAILED}: {'; '.join(failed)}", file=sys.stderr)
        return 1
    print("every implementation that ran passed its checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
