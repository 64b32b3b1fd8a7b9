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


class StrictSandboxBackend:
    """An nnsight backend that runs a trace the way NDIF would, in this process (see module doc)."""

    def __init__(self, envoy):
        self.envoy = envoy
        self.payload_bytes = 0
        self.result_bytes = 0

    def __call__(self, tracer):
        import torch
        from nnsight.schema.request import RequestModel
        from nnsight.tracing.tracer import mark
        from nnsight.tracing.util import push

        blob = RequestModel.serialize(tracer, compress=False)
        self.payload_bytes = len(blob)
        persistent = self.envoy._remoteable_persistent_objects()
        with _Hidden():
            restored = RequestModel.deserialize(blob, persistent, compress=False, unpickler=_StrictUnpickler)
            frame = restored.info.frame
            # exec() takes the block's builtins from its namespace (nnsight's Scope of these locals)
            frame.f_locals["__builtins__"] = _SAFE_BUILTINS
            shipped = dict(frame.f_locals)
            restored.execute(restored.info.code)
            result = {k: v for k, v in frame.f_locals.items() if k not in shipped or v is not shipped[k]}
        # What the server sends back: the saved values, torch.save'd; load them as the client does.
        buffer = io.BytesIO()
        torch.save(result, buffer)
        self.result_bytes = buffer.tell()
        result = torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=False)
        for value in result.values():
            mark(value)
        push(tracer.info.frame, result)
        return result
