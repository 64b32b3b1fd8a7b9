"""A loaded model as the measurements see it (`Model`), and the choices that go with it: device, dtype,
and how a measurement reads the model (plain hooks or an nnsight trace)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from effdepth.access import ndif
from effdepth.access.adapters import Adapter, adapter_for
from effdepth.prompts import check_length, check_text
from effdepth.spec import ModelSpec

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass
class Model:
    """A loaded model ready for the measurements.

    `n_layers` is L, the number of decoder blocks; residual indices run 0 … L (methods page §0).
    """

    spec: str
    nn: object  # nnsight.TransformersModel
    tokenizer: object
    adapter: Adapter
    remote: bool | str = False
    revision: str = ""
    quantisation: str = ""  # the GGUF type the weights were dequantised from ('' for ordinary checkpoints)
    server: object = None  # remote='strict': the simulated server's nnsight model (real weights); `.nn` is then a meta copy, as on NDIF
    server_device: str | None = (
        None  # remote='strict': run the server's model there (e.g. 'meta'), every op checked for mixed devices
    )

    @property
    def hf(self) -> torch.nn.Module:
        """The underlying transformers module (local models only)."""
        return self.nn._module

    @property
    def config(self):
        return self.nn.config if hasattr(self.nn, "config") else self.hf.config

    @property
    def n_layers(self) -> int:
        return len(self.adapter.layer_modules(self.hf))

    @property
    def d_model(self) -> int:
        return int(self.adapter.module(self.hf, self.adapter.embed).weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.adapter.module(self.hf, self.adapter.unembed).weight.shape[0])

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def input_device(self) -> torch.device:
        """Where a trace's inputs go: CPU for a remote model (its local copy lives on `meta`), else `device`."""
        return torch.device("cpu") if self.remote else self.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model runs in: for a model on NDIF the server's (`ndif.served_dtype`: the
        checkpoint's own dtype, bf16 for the models NDIF hosts), not the local meta copy's float32."""
        if self.remote is True:
            return ndif.served_dtype(self.config)
        if self.server is not None:
            return next(self.server._module.parameters()).dtype
        return next(self.hf.parameters()).dtype

    @property
    def slug(self) -> str:
        """The run folder's name for this model (see `slug`)."""
        return ModelSpec.parse(self.spec).slug

    def layers(self, root=None):
        return self.adapter.layer_modules(self.hf if root is None else root)

    def trace(self, *inputs, **kwargs):
        """An nnsight trace, remote on NDIF when the model was loaded so; `remote='local'` is
        nnsight's in-process dry run of that path, `remote='strict'` effdepth's stricter one with
        NDIF's import whitelist (`effdepth.access.ndif.StrictSandboxBackend`)."""
        if self.remote == "strict":
            kwargs.setdefault(
                "backend", ndif.StrictSandboxBackend(self.nn, server=self.server, server_device=self.server_device)
            )
        elif self.remote:
            kwargs.setdefault("remote", self.remote)
        return self.nn.trace(*inputs, **kwargs)

    def encode(self, text: str, add_special_tokens: bool = True, index=None) -> torch.Tensor:
        """Token ids [T] of one prompt (with the tokenizer's own BOS convention), refused with a
        `prompts.PromptError` naming `index` when empty or longer than the model's context.
        `add_special_tokens=False` encodes a fragment to append (an answer): the caller checks the whole."""
        if add_special_tokens:
            check_text(text, index)
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens, return_tensors="pt").input_ids[0]
        if add_special_tokens:
            check_length(self, len(ids), index)
        return ids

    def identity(self) -> dict:
        """What a result must record about the model that made it."""
        return {
            "model": self.spec,
            "revision": self.revision,
            "family": self.adapter.family,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "dtype": str(self.dtype).replace("torch.", ""),
            "remote": bool(self.remote),
        } | ({"weights": f"dequantised from {self.quantisation}"} if self.quantisation else {})


def check_device(device: str) -> None:
    """Raise ValueError (one line) when `device` is not usable here: unknown, or a GPU torch cannot see."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Unknown device '{device}': use cpu, cuda, cuda:<index> or mps.") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(
                f"--device {device} needs a CUDA GPU, and torch sees none on this machine (torch {torch.__version__}); use --device cpu."
            )
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {device}: this machine has {n} CUDA GPU(s), cuda:0 … cuda:{n - 1}.")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: the MPS backend is not available here; use --device cpu.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device '{device}': use cpu, cuda, cuda:<index> or mps.")


def resolve_dtype(dtype, device: str):
    if dtype in (None, "auto"):
        return torch.float32 if str(device).startswith("cpu") else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"Unknown dtype '{dtype}'. Use one of: {', '.join(_DTYPES)} or 'auto'.") from None


def choose_method(model, method: str) -> str:
    """The way a measurement reads the model: 'fast' (plain PyTorch hooks and direct block calls,
    local models) or 'trace' (an nnsight trace, also remote on NDIF); 'auto' picks 'trace' exactly
    when the model is remote. Raises ValueError for anything else, and for 'fast' on a remote model."""
    if method == "auto":
        method = "trace" if model.remote else "fast"
    if method not in ("fast", "trace"):
        raise ValueError(f"method must be 'auto', 'fast' or 'trace', not '{method}'")
    if method == "fast" and model.remote:
        raise ValueError("method='fast' runs the model locally and needs a local model; use method='trace' remotely.")
    return method


def wrap_module(module: torch.nn.Module, tokenizer, spec: str = "in-memory", remote: bool | str = False) -> Model:
    """Wrap an already-built transformers model (e.g. a random-weight test model) as a `Model`."""
    from nnsight import TransformersModel

    module.eval()
    server = None
    if remote == "strict":  # the client holds a meta copy, the simulated server `module` (as on NDIF)
        client = ndif.meta_client(module, tokenizer)
        server = TransformersModel(module, task="text-generation", tokenizer=tokenizer)
        nn = client
    else:
        nn = TransformersModel(module, task="text-generation", tokenizer=tokenizer)
    digest = hashlib.sha256()  # every byte of every parameter and buffer, with its name, dtype and shape
    for name, p in module.state_dict().items():
        t = p.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return Model(
        spec=spec,
        nn=nn,
        tokenizer=nn.tokenizer,
        adapter=adapter_for(module.config),
        remote=remote,
        revision=digest.hexdigest()[:16],
        server=server,
    )
