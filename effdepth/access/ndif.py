"""Running on NDIF: the API key, and a strict local simulation of its sandbox.

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

`configure_key()` sets the run's NDIF API key (from NDIF_API_KEY) on nnsight's in-memory config.
What a remote run downloads and sends is planned in `effdepth.ndif_plan`.
"""

from __future__ import annotations

import builtins
import importlib.abc
import io
import os
import pickle
import sys
from contextlib import contextmanager

import cloudpickle.cloudpickle as cp
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from effdepth.errors import ModelNotAvailable, SandboxRefusal, WrongDevice

# Roots NDIF lets a trace import while it runs (whitelist.yaml `modules`), and, while unpickling
# only, the serialisation machinery (`deserialization_modules`; nnsight's module layout changed
# between releases, so its whole package is allowed there, as the server allows the modules it needs).
EXECUTION_MODULES = frozenset(
    {
        "builtins",
        "torch",
        "collections",
        "numpy",
        "math",
        "typing",
        "operator",
        "_operator",
        "enum",
        "einops",
        "sympy",
        "pandas",
        "time",
        "urllib3",
        "nnterp",
    }
)
DESERIALIZATION_MODULES = EXECUTION_MODULES | {"pickle", "_pickle", "cloudpickle", "copyreg", "nnsight"}


def _allowed(name: str, roots) -> bool:
    """Whitelisted root, not a blocked torch submodule; nnsight only by its submodules (the server's
    list names nnsight's serialisation and envoy modules, not the package: `nnsight.save` in a body
    would be refused there)."""
    if name == "nnsight":
        return False
    return name.split(".")[0] in roots and not name.startswith(
        ("torch.multiprocessing", "torch.distributed", "torch.hub")
    )


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
_SAFE_BUILTINS = {
    k: v
    for k, v in vars(builtins).items()
    if k not in {"open", "exec", "compile", "input", "breakpoint", "help", "exit", "quit"}
}
_SAFE_BUILTINS["__import__"] = _guarded_import


class _Hidden:
    """effdepth out of `sys.modules` (and unimportable) for the duration, as on the server;
    cloudpickle's `subimport` refused for modules off the whitelist."""

    def __enter__(self):

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


def _device_guard():
    """A dispatch mode that refuses any op whose tensor arguments live on more than one device (a
    0-dim CPU tensor, which torch moves itself, excepted): on NDIF the model is on GPUs, sharded
    across several, and a mask or index built on the client's CPU must be moved to the activation's
    device inside the body. Dispatch modes are per thread, and nnsight interleaves the body with
    the model's forward in greenlets of one thread, so the mode sees both."""

    class DeviceGuard(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if (
                func is torch.ops.aten._to_copy.default
                and args[0].is_meta
                and torch.device(kwargs.get("device") or "meta").type == "cpu"
            ):
                return torch.zeros(
                    args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype
                )  # a meta server's copy to its CPU: shapes only
            devices = {
                t.device
                for t in tree_leaves((args, kwargs))
                if isinstance(t, torch.Tensor) and not (t.dim() == 0 and t.device.type == "cpu")
            }
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

    def hook(module, args, kwargs):
        move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else x  # noqa: E731
        return tuple(move(a) for a in args), {k: v if k == "attention_mask" else move(v) for k, v in kwargs.items()}

    return hook


def meta_client(module, tokenizer):
    """The client's copy of a model served remotely: the same architecture on the meta device, as
    nnsight builds it for `remote=True` (no weights here), so client code that reads weight values
    fails in the simulation as it would against NDIF."""
    from nnsight import TransformersModel
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(
            module.config, dtype=next(module.parameters()).dtype, trust_remote_code=False
        )
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
            result = {
                k: torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) and v.is_meta else v
                for k, v in result.items()
            }
        # What the server sends back: the saved values, torch.save'd; load them as the client does.
        buffer = io.BytesIO()
        torch.save(result, buffer)
        self.result_bytes = buffer.tell()
        for counts in _TALLIES:
            counts["traces"] += 1
            counts["result_bytes"] += self.result_bytes
            counts["tensor_bytes"] += sum(
                v.numel() * v.element_size() for v in result.values() if isinstance(v, torch.Tensor)
            )
        result = torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=False)
        for value in result.values():
            mark(value)
        push(tracer.info.frame, result)
        return result


def configure_key() -> str:
    """The NDIF API key of this run, from NDIF_API_KEY, set on nnsight's in-memory config only.

    Never `CONFIG.set_default_api_key`: that writes the key into the user's nnsight config file
    ($XDG_CONFIG_HOME/nnsight/config.yaml, or $NNSIGHT_CONFIG), where it would outlive the run.
    nnsight's `RemoteBackend` reads `CONFIG.API.APIKEY` when a trace is sent; a notebook kernel
    inherits NDIF_API_KEY from `effdepth run` and sets it the same way."""
    key = os.environ.get("NDIF_API_KEY", "").strip()
    if not key:
        raise ModelNotAvailable("Remote execution on NDIF needs an API key: set NDIF_API_KEY (get one at nnsight.net).")
    from nnsight import CONFIG

    CONFIG.API.APIKEY = key  # in memory, for this process only
    return key
