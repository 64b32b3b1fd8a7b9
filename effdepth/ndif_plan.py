"""What a run on NDIF would send and download, before it starts: requests and bytes per chapter
(the `effdepth run --remote` preflight table), and the service check (key, model, versions).

`preflight(...)` is the `effdepth run --remote` table: which chapters run on NDIF and how many
megabytes each would download (what the trace bodies `.save()`, summed over the run).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

from effdepth.access.controls import n_params, narrow_config, remote_control_width
from effdepth.errors import NdifUnavailable

# -- what a remote run downloads ------------------------------------------------------------------
#
# Each function below is the number of bytes the trace bodies of one measurement call `.save()`,
# i.e. what NDIF sends back (tensor payload; the pickle framing adds well under 1 kB per trace).
# T is the tokens per prompt (prompts of different lengths: the formulas hold per prompt).

F32, I64 = 4, 8


def contributions_bytes(L: int, n: int, T: int) -> int:
    """Gram matrices [L, B, T, 3, 3] float32 of (h_l, a_l, m_l) per token."""
    return L * n * T * 9 * F32


def skip_bytes(L: int, n: int, T: int, J: int = 1) -> int:
    """skip_effects / local_effects: per variant (L·J per prompt, J = 1 'current', n_splits 'future')
    the layer effects [L, T] and the output change [T], float32."""
    return n * L * J * (L + 1) * T * F32


def lens_bytes(L: int, n: int) -> int:
    """KL and top-k overlap per residual index: 2 (L+1) float32 per prompt."""
    return n * 2 * (L + 1) * F32


def mean_residual_bytes(L: int, d: int, n: int) -> int:
    """Σ_t h_b per reference prompt: [L+1, d] float32."""
    return n * (L + 1) * d * F32


def erasure_bytes(L: int, d: int, T: int, P: int, n_reference: int = 0, front: bool = False) -> int:
    """Residual erasure of one example of T tokens, P answer-predicting positions: per erased
    (b, t) the change [P] float32 at the scored positions, plus the reference means."""
    positions = (T - 2) + (1 if front else 0)  # erasing past the last scored position is skipped
    return (L + 1) * positions * P * F32 + mean_residual_bytes(L, d, n_reference)


def ig_bytes(L: int, T: int, steps: int, batch_size: int) -> int:
    """Integrated gradients of one example: per layer and batch of path points Σ ∂P/∂x·(x−x') [T]
    float64 and P per row float32, plus P(x)."""
    batches = -(-steps // batch_size)
    return L * (batches * T * I64 + steps * F32) + F32


def depth_bytes(L: int, n: int, T: int, n_splits: int = 4) -> int:
    """depth_score: the teacher-forced greedy check (argmax [T] int64) and the future skip test
    with up to n_splits split points per example."""
    return n * T * I64 + skip_bytes(L, n, T, n_splits)


def residuals_bytes(L: int, d: int, n_windows: int, window: int) -> int:
    """linear_maps' residual capture of one model: h_0 … h_L [L+1, B, window, d] float32 per batch
    (an upper bound: a batch is padded only to its longest window)."""
    return (L + 1) * n_windows * window * d * F32


def gram_statistics_bytes(L1: int, d1: int, L2: int, d2: int) -> int:
    """What streaming the ridge statistics instead would download at the end of one server-side
    session (not implemented: every trace is its own job): XᵀX per source [L1+1, d1, d1] and XᵀY
    per pair [L1+1, L2+1, d1, d2], float32. Smaller than the residuals of N tokens,
    N·((L1+1)·d1 + (L2+1)·d2)·4 bytes, only when N > (L1+1)(L2+1)·d1·d2 / ((L1+1)·d1 + (L2+1)·d2)
    (about (L+1)·d/2 for a model mapped onto itself: 332k tokens for a 70B model, against the
    paper's 51k), so linear maps download residuals."""
    return ((L1 + 1) * d1 * d1 + (L1 + 1) * (L2 + 1) * d1 * d2) * F32


# -- how many requests a remote run sends: one per trace (each is its own NDIF job) ------------------
#
# Each function counts the traces one measurement call runs (`ndif.tally()['traces']` equals them on
# the strict simulation: tests/unit/test_ndif.py). Bundling a chapter's traces into one nnsight session
# would make one request of many, but a session returns only at its end: the per-prompt results the
# store caches for resume (and the Python between traces: split points, aggregation) would then run
# on the server, where effdepth cannot be imported. So every trace stays its own request.

TRACE_VARIANTS = 8  # skipping / local effects: variants per trace (skipping._trace_variants, batch_size=None)


def _ceil(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def contributions_requests(n: int, batch_size: int = 8) -> int:
    return _ceil(n, batch_size)


def skip_requests(L: int, n: int, J: int = 1, batch_size: int = TRACE_VARIANTS) -> int:
    """L·J variants per prompt (J split points; 1 'current'), batch_size variants per trace."""
    return n * _ceil(L * J, batch_size)


def lens_requests(n: int) -> int:
    return n


def erasure_requests(L: int, positions: int, n_reference: int = 0, batch_size: int = 256) -> int:
    """(L+1)·positions erased variants, batch_size per trace, plus one trace per reference prompt."""
    return _ceil((L + 1) * positions, batch_size) + n_reference


def ig_requests(L: int, steps: int, batch_size: int = 32) -> int:
    """One trace per layer and batch of path points, plus P(x)."""
    return L * _ceil(steps, batch_size) + 1


def depth_requests(L: int, n: int, n_splits: int = 4) -> int:
    """The future skip test per example (up to n_splits split points) and one greedy check per example."""
    return skip_requests(L, n, n_splits) + n


def chapter_requests(name: str, p: dict, L: int, tokens: int = 200, answer_tokens: int = 8) -> dict:
    """{part: requests} of one chapter on a remote model of L layers with parameters `p` (the
    notebook's calls, as written in notebooks/<name>.md; the controls run here and send none)."""
    T = tokens
    if name == "contributions":
        return {"contributions": contributions_requests(p["n_examples"], p.get("batch_size", 8))}
    if name == "skipping":
        J, cur, fut = p["n_splits"], p["n_examples"], p["n_examples_future"]
        det_c, det_f = min(cur, max(1, p["detail_examples"])), min(fut, max(1, p["detail_examples"]))
        return {
            "current": skip_requests(L, cur),
            "future": skip_requests(L, fut, J),
            "attention/MLP parts": 2 * (skip_requests(L, det_c) + skip_requests(L, det_f, J)),
            "local effects": skip_requests(L, det_c) + skip_requests(L, det_f, J),
            "positions": skip_requests(L, min(cur, p["position_examples"])),
        }
    if name == "logit_lens":
        return {
            "lens": lens_requests(p["n_examples"]),
            "contributions": contributions_requests(p["n_examples"], p.get("batch_size", 8)),
        }
    if name == "complexity":
        n_ex = 8 * p["n_per_level"]  # MATH levels 1-5 and MQuAKE 2-4 hops
        return {
            "integrated gradients (2 examples)": 2 * ig_requests(L, p["ig_steps"]),
            "erasure (2 examples)": 2 * erasure_requests(L, T - 2, p["n_reference"], p.get("batch_size", 256)),
            "depth score": depth_requests(L, n_ex, p["n_splits"]),
        }
    if name == "comparison":
        return {"contributions": contributions_requests(p["n_examples"]), "lens": lens_requests(p["n_examples"])}
    if name == "model":
        return {"accuracy": _ceil(p.get("n_per_level", 20) * 8, p.get("batch_size", 8))}
    return {}


@dataclass
class Dims:
    """The shape facts the estimates need: L layers, width d, vocabulary V, parameter count."""

    n_layers: int
    d_model: int
    vocab_size: int
    n_params: int = 0
    control_width: int = 0  # the width of its control when run remotely (`controls.remote_control_width`)
    control_params: int = 0

    @classmethod
    def of(cls, config, control: bool = True) -> Dims:
        text = getattr(config, "text_config", None) or config
        get = lambda *names: next(int(getattr(text, n)) for n in names if getattr(text, n, None) is not None)  # noqa: E731
        dims = cls(
            get("num_hidden_layers", "n_layer"), get("hidden_size", "n_embd"), get("vocab_size"), n_params(config)
        )
        if control:
            try:
                dims.control_width = remote_control_width(config)
                dims.control_params = (
                    n_params(narrow_config(config, dims.control_width))
                    if dims.control_width != dims.d_model
                    else dims.n_params
                )
            except ValueError:
                pass
        return dims


@dataclass
class Row:
    chapter: str
    remote: bool  # the model's measurements run on NDIF
    download_mb: float
    note: str = ""
    requests: int = 0  # traces sent to NDIF (one request each)


def _mb(b: float) -> float:
    return b / 1e6


def _controls_note(dims: Dims, n: int) -> str:
    if n <= 0:
        return ""
    if dims.control_width and dims.control_width != dims.d_model:
        return (
            f"{n} random-init control(s) run here, not on NDIF: the same {dims.n_layers} blocks at width {dims.control_width} "
            f"(of {dims.d_model}), {dims.control_params * F32 / 1e9:.1f} GB of float32 weights each"
        )
    gb = dims.n_params * F32 / 1e9
    return (
        f"{n} random-init control(s) run here, not on NDIF: {gb:.1f} GB of float32 weights each"
        if dims.n_params
        else f"{n} random-init control(s) run here"
    )


def preflight(
    model: str, dims: Dims, chapters: dict, tokens: int = 200, answer_tokens: int = 8, pair: tuple | None = None
) -> list[Row]:
    """One row per chapter: whether it runs on NDIF and the megabytes its traces download.

    chapters: {name: parameters} (each chapter's defaults with the run's --set values). tokens:
    the assumed tokens per prompt (T); answer_tokens: answer-predicting positions of a teacher-forced
    example (P). pair: (Dims of src, Dims of tgt) for linear maps when src_model / tgt_model are set.
    """
    L, d = dims.n_layers, dims.d_model
    T, P = tokens, answer_tokens
    rows = []
    for name, p in chapters.items():
        if name in ("zoo", "objective"):
            rows.append(Row(name, False, 0.0, "zoo models only: skipped for this model"))
            continue
        n_ctl = int(p.get("n_controls", 0) or 0)
        if name == "contributions":
            b = contributions_bytes(L, p["n_examples"], T)
        elif name == "skipping":
            cur, fut = p["n_examples"], p["n_examples_future"]
            b = (
                4 * skip_bytes(L, cur, T)
                + 4 * skip_bytes(L, fut, T, p["n_splits"])
                + skip_bytes(L, p["position_examples"], T)
            )
        elif name == "logit_lens":
            b = lens_bytes(L, p["n_examples"]) + contributions_bytes(L, p["n_examples"], T)
        elif name == "complexity":
            n_ex = 8 * p["n_per_level"]  # MATH levels 1-5 and MQuAKE 2-4 hops
            b = 2 * (ig_bytes(L, T, p["ig_steps"], 32) + erasure_bytes(L, d, T, P, p["n_reference"])) + depth_bytes(
                L, n_ex, T
            )
        elif name == "linear_maps":
            if pair is None:
                rows.append(
                    Row(name, True, 0.0, "needs src_model and tgt_model (--set); nothing measured without a pair")
                )
                continue
            s, t = pair
            n_w, w = p["n_windows"], p["window"]
            b = residuals_bytes(s.n_layers, s.d_model, n_w, w) + residuals_bytes(t.n_layers, t.d_model, n_w, w)
            if p.get("compare_sgd"):
                sgd_windows = p["sgd_steps"] * p["sgd_batch_windows"]  # one batch of windows per step
                b += residuals_bytes(s.n_layers, s.d_model, sgd_windows, w) + residuals_bytes(
                    t.n_layers, t.d_model, sgd_windows, w
                )
            n_ctl = n_ctl if p.get("controls") else 0
            stats = gram_statistics_bytes(s.n_layers, s.d_model, t.n_layers, t.d_model)
            note = f"residuals (at least: × the target blocks memory_gb needs); streamed ridge statistics (not implemented) would be {_mb(stats):,.0f} MB"
            rows.append(Row(name, True, _mb(b), "; ".join(x for x in (note, _controls_note(t, n_ctl)) if x)))
            continue
        elif name == "comparison":
            b = lens_bytes(L, p["n_examples"]) + contributions_bytes(L, p["n_examples"], T)
        elif name == "model":
            n_req = sum(chapter_requests(name, p, L, T, P).values())
            rows.append(
                Row(
                    name,
                    True,
                    _mb(n_req * p.get("batch_size", 8) * T * I64),
                    "greedy predictions (argmax) per batch",
                    n_req,
                )
            )
            continue
        else:
            rows.append(Row(name, False, 0.0, "no estimate for this chapter"))
            continue
        rows.append(
            Row(name, True, _mb(b), _controls_note(dims, n_ctl), sum(chapter_requests(name, p, L, T, P).values()))
        )
    return rows


def format_preflight(model: str, dims: Dims, rows: list[Row], tokens: int = 200) -> str:
    """The table `effdepth run --remote` prints before anything runs."""
    head = (
        f"[effdepth] --remote preflight for {model}: {dims.n_layers} layers, d={dims.d_model}, vocab {dims.vocab_size}"
        f"{f', {dims.n_params / 1e9:.1f} B parameters' if dims.n_params else ''}; downloads assume {tokens} tokens per prompt"
    )
    lines = [head, f"  {'chapter':<14} {'on NDIF':<8} {'requests':>9} {'download':>12}  note"]
    for r in rows:
        lines.append(
            f"  {r.chapter:<14} {'yes' if r.remote else 'no':<8} {r.requests:>9,} {r.download_mb:>9,.1f} MB  {r.note}"
        )
    total = sum(r.download_mb for r in rows)
    lines.append(
        f"  {'total':<14} {'':<8} {sum(r.requests for r in rows):>9,} {total:>9,.1f} MB  (one request per trace: each is queued on NDIF)"
    )
    return "\n".join(lines)


def load_config(spec: str):
    """A Hub model's config (what NDIF serves), read without any weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(spec, trust_remote_code=False)


# -- before a remote run: the key, the model, the versions (nnsight's whoami / status / env) -----


def service_check(model: str, key: str, timeout: float = 10.0) -> list[str]:
    """Ask NDIF, before any chapter starts, (1) whether `key` is a known API key (nnsight's
    `whoami`), (2) whether `model` is deployed and running (`status`), (3) whether this nnsight is
    the server's (`compare`'s environment). Raises `NdifUnavailable` with one actionable line on
    the first problem (an unreachable service fails in seconds, not after every chapter's first
    trace has waited for it); returns notes (other critical packages that differ)."""
    import nnsight
    from nnsight import CONFIG
    from nnsight import ndif as service

    host = CONFIG.API.HOST

    def get(path, headers=None):
        try:
            return service._get(path, timeout=(min(5.0, timeout), timeout), headers=headers)
        except Exception as err:  # httpx: connection refused, DNS, timeout, HTTP status
            raise NdifUnavailable(
                f"NDIF ({host}) cannot be reached or refused the request for {path} "
                f"({type(err).__name__}: {' '.join(str(err).split())[:160]}); check the network (NDIF_HOST to use another "
                f"server) and https://status.ndif.us, or run the book locally without --remote."
            ) from None

    who = get("/whoami", headers={"ndif-api-key": key})
    if not (isinstance(who, dict) and who.get("email")):
        raise NdifUnavailable(
            f"NDIF ({host}) does not recognise the API key in NDIF_API_KEY (…{key[-4:]}); get a key at https://login.ndif.us and set NDIF_API_KEY."
        )
    deployments = get("/status").get("deployments", {})
    mine = [d for d in deployments.values() if d.get("repo_id") == model]
    if not mine:
        hosted = sorted(
            {d.get("repo_id", "?") for d in deployments.values() if d.get("deployment_level") in ("HOT", "WARM")}
        )
        raise NdifUnavailable(
            f"NDIF does not host '{model}' now; hosted models: {', '.join(hosted) or 'none'}. See https://nnsight.net/status."
        )
    if not any(d.get("application_state") == "RUNNING" for d in mine):
        states = ", ".join(
            sorted({f"{d.get('deployment_level', '?')}/{d.get('application_state', '?')}" for d in mine})
        )
        raise NdifUnavailable(
            f"NDIF hosts '{model}' but it is not running now ({states}); try again when nnsight.status() shows it RUNNING."
        )
    remote = get("/env").get("packages", {})
    ours = nnsight.__version__
    if remote.get("nnsight") and remote["nnsight"] != ours:
        raise NdifUnavailable(
            f"NDIF runs nnsight {remote['nnsight']}, this machine nnsight {ours}: requests from another version are refused or "
            f"run differently; install the server's (pip install 'nnsight=={remote['nnsight']}')."
        )
    notes = []
    try:
        for pkg in ("torch", "transformers"):
            if remote.get(pkg) and remote[pkg] != version(pkg):
                notes.append(
                    f"NDIF runs {pkg} {remote[pkg]}, this machine {version(pkg)} (module names and outputs may differ)"
                )
    except Exception:
        pass
    return notes
