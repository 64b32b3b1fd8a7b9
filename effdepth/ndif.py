"""Running on NDIF: a strict local simulation of its sandbox, and what each chapter would download.

NDIF runs a trace by unpickling the traced block (its source, the globals and locals it names,
and the tracer with its inputs) and executing it against the server's copy of the model inside a
sandbox that imports only whitelisted modules (ndif-team/ndif, `security/whitelist.yaml`: torch,
numpy, collections, math, typing, operator, enum, einops, ... and, while unpickling, pickle,
cloudpickle and nnsight's own modules). effdepth is not on that list: a trace body that names an
effdepth object or function is refused when the server unpickles it.

nnsight's own `remote="local"` simulation hides only modules that are not pip-installed, so an
installed effdepth passes it. `remote="strict"` (see `StrictSandboxBackend`) is the stricter
dry run the tests use: the block is serialised exactly as nnsight's `RemoteBackend` does
(`RequestModel.serialize`, no module shipped by value), unpickled with every module outside the
whitelist refused (and `effdepth` removed from `sys.modules`), run with the restored globals only
(not the caller's frame), and only the values it saved come back.

`preflight(...)` is the `effdepth run --remote` table: which chapters run on NDIF and how many
megabytes each would download (what the trace bodies `.save()`, summed over the run).
"""

from __future__ import annotations

import builtins
import importlib.abc
import io
import pickle
import sys
from contextlib import contextmanager
from dataclasses import dataclass

# Roots NDIF lets a trace import while it runs (whitelist.yaml `modules`), and, while unpickling
# only, the serialisation machinery (`deserialization_modules`; nnsight's module layout changed
# between releases, so its whole package is allowed there, as the server allows the modules it needs).
EXECUTION_MODULES = frozenset({
    "builtins", "torch", "collections", "numpy", "math", "typing", "operator", "_operator",
    "enum", "einops", "sympy", "pandas", "time", "urllib3", "nnterp",
})
DESERIALIZATION_MODULES = EXECUTION_MODULES | {"pickle", "_pickle", "cloudpickle", "copyreg", "nnsight"}


class SandboxRefusal(ImportError):
    """The trace names a module NDIF's sandbox would refuse (the message names it)."""


def _allowed(name: str, roots) -> bool:
    """Whitelisted root, not a blocked torch submodule; nnsight only by its submodules (the server's
    list names nnsight's serialisation and envoy modules, not the package: `nnsight.save` in a body
    would be refused there)."""
    if name == "nnsight":
        return False
    return name.split(".")[0] in roots and not name.startswith(("torch.multiprocessing", "torch.distributed", "torch.hub"))


def _refuse(module: str, what: str):
    raise SandboxRefusal(
        f"NDIF's sandbox would refuse this trace: it {what} '{module}', which is not on NDIF's whitelist "
        f"(torch, numpy, collections, math, ...). Resolve effdepth objects to envoys before the trace "
        f"and use only tensor operations inside it."
    )


class _StrictUnpickler(pickle.Unpickler):
    """nnsight's unpickler (persistent ids resolve to the server's model) with NDIF's
    `find_class` check: a class or function may come only from a whitelisted module."""

    def __init__(self, file, persistent_objects):
        super().__init__(file)
        self.persistent_objects = persistent_objects or {}

    def persistent_load(self, pid):
        if pid in self.persistent_objects:
            return self.persistent_objects[pid]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")

    def find_class(self, module, name):
        if not _allowed(module, DESERIALIZATION_MODULES):
            _refuse(module, f"unpickles {name} from")
        return super().find_class(module, name)


class _BlockEffdepth(importlib.abc.MetaPathFinder):
    """Refuses any import of effdepth while the simulated server holds the block."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == "effdepth":
            _refuse(fullname, "imports")
        return None


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level or not _allowed(name, EXECUTION_MODULES):
        _refuse(name, "imports")
    return builtins.__import__(name, globals, locals, fromlist, level)


# The builtins a block runs with: NDIF's list leaves out file, process and code-compiling access.
_SAFE_BUILTINS = {k: v for k, v in vars(builtins).items() if k not in {"open", "exec", "compile", "input", "breakpoint", "help", "exit", "quit"}}
_SAFE_BUILTINS["__import__"] = _guarded_import


class _Hidden:
    """effdepth out of `sys.modules` (and unimportable) for the duration, as on the server;
    cloudpickle's `subimport` refused for modules off the whitelist."""

    def __enter__(self):
        import cloudpickle.cloudpickle as cp

        self.modules = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] == "effdepth"}
        self.finder = _BlockEffdepth()
        sys.meta_path.insert(0, self.finder)
        self.cp, self.subimport = cp, cp.subimport

        def subimport(name):
            if not _allowed(name, DESERIALIZATION_MODULES):
                _refuse(name, "imports")
            return self.subimport(name)

        cp.subimport = subimport
        return self

    def __exit__(self, *exc):
        sys.meta_path.remove(self.finder)
        sys.modules.update(self.modules)
        self.cp.subimport = self.subimport
        return False


_TALLIES: list[dict] = []


@contextmanager
def tally():
    """Counts what strict-sandbox traces send back while open: {'traces', 'result_bytes' (the
    torch.save'd reply), 'tensor_bytes' (its tensors' payload)}."""
    counts = {"traces": 0, "result_bytes": 0, "tensor_bytes": 0}
    _TALLIES.append(counts)
    try:
        yield counts
    finally:
        _TALLIES.remove(counts)


class WrongDevice(RuntimeError):
    """A trace body combined tensors of different devices (the message names the op and devices)."""


def _device_guard():
    """A dispatch mode that refuses any op whose tensor arguments live on more than one device (a
    0-dim CPU tensor, which torch moves itself, excepted): on NDIF the model is on GPUs, sharded
    across several, and a mask or index built on the client's CPU must be moved to the activation's
    device inside the body. Dispatch modes are per thread, and nnsight interleaves the body with
    the model's forward in greenlets of one thread, so the mode sees both."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class DeviceGuard(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default and args[0].is_meta and torch.device(kwargs.get("device") or "meta").type == "cpu":
                return torch.zeros(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)  # a meta server's copy to its CPU: shapes only
            devices = {t.device for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and not (t.dim() == 0 and t.device.type == "cpu")}
            if len(devices) > 1 and _called_from_body():
                raise WrongDevice(
                    f"{func} mixes tensors on {', '.join(sorted(map(str, devices)))} inside a trace: on NDIF the model "
                    f"lives on the server's GPUs; move every tensor made before the trace to the activation's device "
                    f"(x.to(activation.device)) inside the body."
                )
            return func(*args, **kwargs)

    return DeviceGuard()


_LIBRARIES = ("/torch/", "/transformers/", "/nnsight/", "/accelerate/")


def _called_from_body() -> bool:
    """Whether the op was called by the trace body (the first frame outside torch is not the model's
    own code in transformers or nnsight's machinery): the model's internals are the server's business
    (on a meta server the attention mask stays on the CPU, as transformers reads its values)."""
    frame = sys._getframe(2)
    while frame is not None and "/torch/" in frame.f_code.co_filename:
        frame = frame.f_back
    return frame is None or not any(lib in frame.f_code.co_filename for lib in _LIBRARIES[1:])


def _inputs_to(device):
    """A forward pre-hook moving the inputs to the model's device, as accelerate's dispatch hook does
    on NDIF's server (the client sends CPU token ids)."""
    import torch

    def hook(module, args, kwargs):
        move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else x  # noqa: E731
        return tuple(move(a) for a in args), {k: v if k == "attention_mask" else move(v) for k, v in kwargs.items()}

    return hook


def meta_client(module, tokenizer):
    """The client's copy of a model served remotely: the same architecture on the meta device, as
    nnsight builds it for `remote=True` (no weights here), so client code that reads weight values
    fails in the simulation as it would against NDIF."""
    import torch
    from nnsight import TransformersModel
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(module.config, dtype=next(module.parameters()).dtype, trust_remote_code=False)
    # nnsight builds its pipeline from a module with weights; the envoy tree is then re-pointed at
    # the meta copy (the server's model must be wrapped after this, so its hooks are the live ones)
    client = TransformersModel(module, task="text-generation", tokenizer=tokenizer)
    client._update(meta.eval())
    client.args = tuple(meta if a is module else a for a in client.args)  # sent by persistent id, as the envoy's module
    if getattr(client, "pipeline", None) is not None:
        client.pipeline.model = meta
    return client


def served_dtype(config):
    """The dtype NDIF runs a model in: the checkpoint's own (`dtype` / `torch_dtype` in its config;
    bfloat16 for every model NDIF hosts today), bfloat16 when the config names none or float32."""
    import torch

    name = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(name, str):
        name = getattr(torch, name.replace("torch.", ""), None)
    return name if isinstance(name, torch.dtype) and name in (torch.bfloat16, torch.float16) else torch.bfloat16


class StrictSandboxBackend:
    """An nnsight backend that runs a trace the way NDIF would, in this process (see module doc).

    envoy: the client's model (for `Model`s loaded with remote='strict', a meta copy); server: the
    nnsight model the block runs against (real weights; default: `envoy`). With `server_device`
    the server's module is moved there first (e.g. 'meta': the forward computes shapes only, and the
    saved values come back as zeros of their shapes), and every op of the trace is checked for
    tensors of another device (`WrongDevice`)."""

    def __init__(self, envoy, server=None, server_device=None):
        self.envoy = envoy
        self.server = server if server is not None else envoy
        self.server_device = server_device
        self.payload_bytes = 0
        self.result_bytes = 0

    def __call__(self, tracer):
        import torch
        from nnsight.schema.request import RequestModel
        from nnsight.tracing.tracer import mark
        from nnsight.tracing.util import push

        blob = RequestModel.serialize(tracer, compress=False)
        self.payload_bytes = len(blob)
        persistent = self.server._remoteable_persistent_objects()
        module, handle = self.server._module, None
        if self.server_device is not None:
            module.to(self.server_device)
            if torch.device(self.server_device).type == "meta":  # sdpa's mask shortcut reads mask values
                module.set_attn_implementation("eager")
            handle = module.register_forward_pre_hook(_inputs_to(torch.device(self.server_device)), with_kwargs=True)
        try:
            with _Hidden():
                restored = RequestModel.deserialize(blob, persistent, compress=False, unpickler=_StrictUnpickler)
                frame = restored.info.frame
                # exec() takes the block's builtins from its namespace (nnsight's Scope of these locals)
                frame.f_locals["__builtins__"] = _SAFE_BUILTINS
                shipped = dict(frame.f_locals)
                if self.server_device is not None:
                    with _device_guard():
                        restored.execute(restored.info.code)
                else:
                    restored.execute(restored.info.code)
                result = {k: v for k, v in frame.f_locals.items() if k not in shipped or v is not shipped[k]}
        finally:
            if handle is not None:
                handle.remove()
        if self.server_device is not None:  # a meta server has shapes only: zeros of those shapes come back
            result = {k: torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) and v.is_meta else v for k, v in result.items()}
        # What the server sends back: the saved values, torch.save'd; load them as the client does.
        buffer = io.BytesIO()
        torch.save(result, buffer)
        self.result_bytes = buffer.tell()
        for counts in _TALLIES:
            counts["traces"] += 1
            counts["result_bytes"] += self.result_bytes
            counts["tensor_bytes"] += sum(v.numel() * v.element_size() for v in result.values() if isinstance(v, torch.Tensor))
        result = torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=False)
        for value in result.values():
            mark(value)
        push(tracer.info.frame, result)
        return result


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
    T, P = tokens, answer_tokens
    if name == "contributions":
        return {"contributions": contributions_requests(p["n_examples"], p.get("batch_size", 8))}
    if name == "skipping":
        J, cur, fut = p["n_splits"], p["n_examples"], p["n_examples_future"]
        det_c, det_f = min(cur, max(1, p["detail_examples"])), min(fut, max(1, p["detail_examples"]))
        return {"current": skip_requests(L, cur), "future": skip_requests(L, fut, J),
                "attention/MLP parts": 2 * (skip_requests(L, det_c) + skip_requests(L, det_f, J)),
                "local effects": skip_requests(L, det_c) + skip_requests(L, det_f, J),
                "positions": skip_requests(L, min(cur, p["position_examples"]))}
    if name == "logit_lens":
        return {"lens": lens_requests(p["n_examples"]), "contributions": contributions_requests(p["n_examples"], p.get("batch_size", 8))}
    if name == "complexity":
        n_ex = 8 * p["n_per_level"]  # MATH levels 1-5 and MQuAKE 2-4 hops
        return {"integrated gradients (2 examples)": 2 * ig_requests(L, p["ig_steps"]),
                "erasure (2 examples)": 2 * erasure_requests(L, T - 2, p["n_reference"], p.get("batch_size", 256)),
                "depth score": depth_requests(L, n_ex, p["n_splits"])}
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
    def of(cls, config, control: bool = True) -> "Dims":
        text = getattr(config, "text_config", None) or config
        get = lambda *names: next(int(getattr(text, n)) for n in names if getattr(text, n, None) is not None)  # noqa: E731
        dims = cls(get("num_hidden_layers", "n_layer"), get("hidden_size", "n_embd"), get("vocab_size"), _n_params(config))
        if control:
            from .controls import narrow_config, remote_control_width

            try:
                dims.control_width = remote_control_width(config)
                dims.control_params = _n_params(narrow_config(config, dims.control_width)) if dims.control_width != dims.d_model else dims.n_params
            except ValueError:
                pass
        return dims


def _n_params(config) -> int:
    """Parameters of the architecture, counted on the meta device (no weights are built)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            m = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        return sum(p.numel() for p in m.parameters())
    except Exception:  # an architecture transformers cannot build: the control line says so
        return 0


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
        return (f"{n} random-init control(s) run here, not on NDIF: the same {dims.n_layers} blocks at width {dims.control_width} "
                f"(of {dims.d_model}), {dims.control_params * F32 / 1e9:.1f} GB of float32 weights each")
    gb = dims.n_params * F32 / 1e9
    return f"{n} random-init control(s) run here, not on NDIF: {gb:.1f} GB of float32 weights each" if dims.n_params else f"{n} random-init control(s) run here"


def preflight(model: str, dims: Dims, chapters: dict, tokens: int = 200, answer_tokens: int = 8, pair: tuple | None = None) -> list[Row]:
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
            b = 4 * skip_bytes(L, cur, T) + 4 * skip_bytes(L, fut, T, p["n_splits"]) + skip_bytes(L, p["position_examples"], T)
        elif name == "logit_lens":
            b = lens_bytes(L, p["n_examples"]) + contributions_bytes(L, p["n_examples"], T)
        elif name == "complexity":
            n_ex = 8 * p["n_per_level"]  # MATH levels 1-5 and MQuAKE 2-4 hops
            b = 2 * (ig_bytes(L, T, p["ig_steps"], 32) + erasure_bytes(L, d, T, P, p["n_reference"])) + depth_bytes(L, n_ex, T)
        elif name == "linear_maps":
            if pair is None:
                rows.append(Row(name, True, 0.0, "needs src_model and tgt_model (--set); nothing measured without a pair"))
                continue
            s, t = pair
            n_w, w = p["n_windows"], p["window"]
            b = residuals_bytes(s.n_layers, s.d_model, n_w, w) + residuals_bytes(t.n_layers, t.d_model, n_w, w)
            if p.get("compare_sgd"):
                sgd_windows = p["sgd_steps"] * p["sgd_batch_windows"]  # one batch of windows per step
                b += residuals_bytes(s.n_layers, s.d_model, sgd_windows, w) + residuals_bytes(t.n_layers, t.d_model, sgd_windows, w)
            n_ctl = n_ctl if p.get("controls") else 0
            stats = gram_statistics_bytes(s.n_layers, s.d_model, t.n_layers, t.d_model)
            note = f"residuals (at least: × the target blocks memory_gb needs); streamed ridge statistics (not implemented) would be {_mb(stats):,.0f} MB"
            rows.append(Row(name, True, _mb(b), "; ".join(x for x in (note, _controls_note(t, n_ctl)) if x)))
            continue
        elif name == "comparison":
            b = lens_bytes(L, p["n_examples"]) + contributions_bytes(L, p["n_examples"], T)
        elif name == "model":
            n_req = sum(chapter_requests(name, p, L, T, P).values())
            rows.append(Row(name, True, _mb(n_req * p.get("batch_size", 8) * T * I64), "greedy predictions (argmax) per batch", n_req))
            continue
        else:
            rows.append(Row(name, False, 0.0, "no estimate for this chapter"))
            continue
        rows.append(Row(name, True, _mb(b), _controls_note(dims, n_ctl), sum(chapter_requests(name, p, L, T, P).values())))
    return rows


def format_preflight(model: str, dims: Dims, rows: list[Row], tokens: int = 200) -> str:
    """The table `effdepth run --remote` prints before anything runs."""
    head = (f"[effdepth] --remote preflight for {model}: {dims.n_layers} layers, d={dims.d_model}, vocab {dims.vocab_size}"
            f"{f', {dims.n_params / 1e9:.1f} B parameters' if dims.n_params else ''}; downloads assume {tokens} tokens per prompt")
    lines = [head, f"  {'chapter':<14} {'on NDIF':<8} {'requests':>9} {'download':>12}  note"]
    for r in rows:
        lines.append(f"  {r.chapter:<14} {'yes' if r.remote else 'no':<8} {r.requests:>9,} {r.download_mb:>9,.1f} MB  {r.note}")
    total = sum(r.download_mb for r in rows)
    lines.append(f"  {'total':<14} {'':<8} {sum(r.requests for r in rows):>9,} {total:>9,.1f} MB  (one request per trace: each is queued on NDIF)")
    return "\n".join(lines)


def load_config(spec: str):
    """A Hub model's config (what NDIF serves), read without any weights."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(spec, trust_remote_code=False)


def remote_preflight(model: str, chapters: list[str], extra: dict | None = None, tokens: int = 200) -> str:
    """The preflight table for `effdepth run --model <model> --remote` over `chapters` (each
    chapter's defaults overridden by the run's --set values, chapter-scoped ones included, exactly
    as `book.run` passes them), from the configs alone. Raises ValueError when a model's config
    cannot be read from the Hub: every chapter would then fail the same way, after loading."""
    from .book import chapter_defaults, chapter_values

    params = {}
    for name in chapters:  # as `book.run` passes them: shared values, then `chapter.name=value` ones
        defaults = chapter_defaults(name)
        params[name] = {**defaults, **chapter_values(name, extra or {}, defaults)}
    maps = params.get("linear_maps", {})
    try:
        dims = Dims.of(load_config(model))
        pair = (Dims.of(load_config(maps["src_model"])), Dims.of(load_config(maps["tgt_model"]))) if maps.get("src_model") and maps.get("tgt_model") else None
    except (OSError, ValueError) as err:
        raise ValueError(f"--remote: the config of {model} cannot be read from the Hugging Face Hub ({' '.join(str(err).split())[:200]}), "
                         "so NDIF cannot run it either: check the network and the model id, then rerun.") from None
    return format_preflight(model, dims, preflight(model, dims, params, tokens=tokens, pair=pair), tokens=tokens)


# -- before a remote run: the key, the model, the versions (nnsight's whoami / status / env) -----


class NdifUnavailable(RuntimeError):
    """NDIF cannot run this book now: unreachable, key refused, model not hosted, nnsight mismatch."""


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
        raise NdifUnavailable(f"NDIF ({host}) does not recognise the API key in NDIF_API_KEY (…{key[-4:]}); get a key at https://login.ndif.us and set NDIF_API_KEY.")
    deployments = get("/status").get("deployments", {})
    mine = [d for d in deployments.values() if d.get("repo_id") == model]
    if not mine:
        hosted = sorted({d.get("repo_id", "?") for d in deployments.values() if d.get("deployment_level") in ("HOT", "WARM")})
        raise NdifUnavailable(f"NDIF does not host '{model}' now; hosted models: {', '.join(hosted) or 'none'}. See https://nnsight.net/status.")
    if not any(d.get("application_state") == "RUNNING" for d in mine):
        states = ", ".join(sorted({f"{d.get('deployment_level', '?')}/{d.get('application_state', '?')}" for d in mine}))
        raise NdifUnavailable(f"NDIF hosts '{model}' but it is not running now ({states}); try again when nnsight.status() shows it RUNNING.")
    remote = get("/env").get("packages", {})
    ours = nnsight.__version__
    if remote.get("nnsight") and remote["nnsight"] != ours:
        raise NdifUnavailable(f"NDIF runs nnsight {remote['nnsight']}, this machine nnsight {ours}: requests from another version are refused or "
                              f"run differently; install the server's (pip install 'nnsight=={remote['nnsight']}').")
    notes = []
    try:
        from importlib.metadata import version

        for pkg in ("torch", "transformers"):
            if remote.get(pkg) and remote[pkg] != version(pkg):
                notes.append(f"NDIF runs {pkg} {remote[pkg]}, this machine {version(pkg)} (module names and outputs may differ)")
    except Exception:
        pass
    return notes
