"""The one training loop of the models trained here (the zoo and the §3.5 grid): causal LMs on
packed windows, with resume from checkpoints.

Pieces (usable separately):

* :func:`encode_pair` — token ids of one example, ``<bos> prompt answer <eos>``, with a mask of the
  answer tokens (the answer's characters and the closing ``<eos>``).
* :func:`pack` — greedily packs encoded examples into fixed windows of ``window`` tokens; an
  example is never split across windows (a window ends early and is padded with ``<pad>`` when the
  next example does not fit). Every window therefore starts with an example's ``<bos>``.
* :func:`batches` — stacks windows into ``{"input_ids", "loss_mask", "answer_mask"}`` batches;
  :func:`stack_batches` stores many compactly, :class:`StackedBatches` / :class:`DeviceBatches`
  hand them to :func:`train` one step at a time.
* :func:`train` — AdamW with linear warm-up and cosine decay, gradient clipping, loss on all real
  tokens (``loss_on="all"``, optionally with answer tokens weighted ``answer_weight`` times more)
  or on answer tokens only (``loss_on="answer"``), a tqdm bar, loss history, and periodic atomic
  checkpoints from which an interrupted run resumes exactly.
* :func:`save_folder` / :func:`is_complete` — a finished model's folder (weights, tokenizer,
  ``report.json``), renamed into place so that a folder that exists is complete.

Losses: position t predicts token t+1; it counts when token t+1 is in the chosen mask. ``<pad>``
and the ``<bos>`` of a following example are never targets. The reported loss of a step is the
mean over its counted targets.

Resuming requires the data to be deterministic: ``data`` is either a sequence of batches (indexed
by step) or a zero-argument callable returning a fresh iterator (it is advanced past the batches
already consumed).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from effdepth.tokenizer import BOS_ID, EOS_ID, PAD_ID, encode, zoo_tokenizer


def encode_pair(
    prompt: str, answer: str = "", encode_fn: Callable[[str], list[int]] = encode
) -> tuple[list[int], list[bool]]:
    """(ids, answer_mask) of ``<bos> prompt answer <eos>``; the mask marks answer tokens and ``<eos>``.

    A plain training text with no separate answer can be passed as ``prompt`` alone (its mask is
    then all False except ``<eos>``).
    """
    p, a = encode_fn(prompt), encode_fn(answer)
    ids = [BOS_ID] + p + a + [EOS_ID]
    mask = [False] * (1 + len(p)) + [True] * (len(a) + 1)
    return ids, mask


def encode_turns(
    turns: Sequence[tuple[str, str]], encode_fn: Callable[[str], list[int]] = encode
) -> tuple[list[int], list[bool]]:
    """(ids, answer_mask) of ``<bos> prompt1 answer1 prompt2 answer2 … <eos>`` (one example, several answers)."""
    ids, mask = [BOS_ID], [False]
    for prompt, answer in turns:
        p, a = encode_fn(prompt), encode_fn(answer)
        ids += p + a
        mask += [False] * len(p) + [True] * len(a)
    return ids + [EOS_ID], mask + [True]


def pack(
    encoded: Iterable[tuple[list[int], list[bool]]], window: int, too_long: str = "error", lookahead: int = 0
) -> Iterator[tuple[list[int], list[bool]]]:
    """Pack encoded examples into windows of exactly ``window`` tokens without splitting any.

    too_long: what to do with an example longer than ``window``: 'error' (ValueError) or 'skip'.
    lookahead: 0 packs in order (a window closes when the next example does not fit); k > 0 keeps
    up to k pending examples and fills each window first-fit from them, in their order (fewer pads,
    order slightly changed, still deterministic).
    Yields (ids, answer_mask) pairs, padded on the right with ``<pad>``.
    """

    def fits(ex):
        if len(ex[0]) <= window:
            return True
        if too_long == "skip":
            return False
        raise ValueError(f"An example of {len(ex[0])} tokens does not fit a window of {window}.")

    source = (ex for ex in encoded if fits(ex))
    if lookahead <= 0:
        cur_ids: list[int] = []
        cur_mask: list[bool] = []
        for ids, mask in source:
            if len(cur_ids) + len(ids) > window:
                yield _pad(cur_ids, cur_mask, window)
                cur_ids, cur_mask = [], []
            cur_ids += ids
            cur_mask += mask
        if cur_ids:
            yield _pad(cur_ids, cur_mask, window)
        return

    pending: list = []
    exhausted = False
    while True:
        while not exhausted and len(pending) < lookahead:
            try:
                pending.append(next(source))
            except StopIteration:
                exhausted = True
        if not pending:
            return
        cur_ids, cur_mask, rest = [], [], []
        for ex in pending:
            if len(cur_ids) + len(ex[0]) <= window:
                cur_ids += ex[0]
                cur_mask += ex[1]
            else:
                rest.append(ex)
        pending = rest
        yield _pad(cur_ids, cur_mask, window)


def _pad(ids, mask, window):
    n = window - len(ids)
    return ids + [PAD_ID] * n, mask + [False] * n


def batches(windows: Iterable[tuple[list[int], list[bool]]], batch_size: int, drop_last: bool = True) -> Iterator[dict]:
    """Stack windows into batches ``{"input_ids": [B,T] long, "answer_mask": [B,T] bool, "loss_mask": [B,T] bool}``
    (plus ``"loss_weight": [B,T] float`` when windows carry weights; see :func:`make_batch`).

    ``loss_mask`` marks tokens that may be targets under the all-token loss (not ``<pad>``, not ``<bos>``).
    """
    it = iter(windows)
    while True:
        chunk = list(itertools.islice(it, batch_size))
        if not chunk or (drop_last and len(chunk) < batch_size):
            return
        yield make_batch(chunk)


def make_batch(windows: Sequence[tuple]) -> dict:
    """Batch of windows (ids, answer_mask) or (ids, answer_mask, loss_weight): a window's optional
    third element is a list of per-token loss weights (used by :func:`train` with ``loss_on="all"``)."""
    ids = torch.tensor([w[0] for w in windows], dtype=torch.long)
    answer = torch.tensor([w[1] for w in windows], dtype=torch.bool)
    batch = {"input_ids": ids, "answer_mask": answer, "loss_mask": (ids != PAD_ID) & (ids != BOS_ID)}
    if any(len(w) > 2 for w in windows):
        batch["loss_weight"] = torch.tensor(
            [w[2] if len(w) > 2 else [1.0] * len(w[0]) for w in windows], dtype=torch.float32
        )
    return batch


def stack_batches(batch_list: Sequence[dict]) -> dict:
    """Store many batches compactly: one dict of [N, B, T] tensors (index it with :func:`batch_at`)."""
    return {k: torch.stack([b[k] for b in batch_list]) for k in batch_list[0]}


def batch_at(stacked: dict, i: int) -> dict:
    return {k: v[i] for k, v in stacked.items()}


class StackedBatches(Sequence):
    """A sequence view of stacked batches (what :func:`train` indexes by step)."""

    def __init__(self, stacked: dict):
        self.stacked = stacked

    def __len__(self):
        return int(next(iter(self.stacked.values())).shape[0])

    def __getitem__(self, i):
        return batch_at(self.stacked, i)


class DeviceBatches(Sequence):
    """Stacked batches handed to the training loop one step at a time, moved to ``device``."""

    def __init__(self, stacked: dict, device: str = "cpu"):
        self.stacked, self.device = stacked, device

    def __len__(self):
        return int(self.stacked["input_ids"].shape[0])

    def __getitem__(self, i):
        return {k: v[i].to(self.device) for k, v in self.stacked.items()}


def masked_lm_loss(
    logits: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over targets where ``target_mask`` (aligned with ``input_ids``) is True.

    weights (aligned with ``input_ids``, optional): a weighted mean instead, sum(w * loss) / sum(w).
    """
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:]
    m = target_mask[:, 1:]
    n = int(m.sum())
    if n == 0:
        return logits.sum() * 0.0, 0
    if weights is None:
        return torch.nn.functional.cross_entropy(logits[m], targets[m], reduction="mean"), n
    w = weights[:, 1:][m].float()
    per = torch.nn.functional.cross_entropy(logits[m], targets[m], reduction="none")
    return (per * w).sum() / w.sum(), n


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`train`."""

    steps: int
    lr: float = 3e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    loss_on: str = "all"  # "all" | "answer"
    answer_weight: float = 1.0  # with loss_on="all": weight of answer tokens relative to the others
    checkpoint_every: int = 200
    log_every: int = 10
    stop_below: float | None = None  # stop early once a logged (interval-mean) loss is below this
    threads: int | None = 1  # torch intra-op threads during training (fixed for determinism)


@dataclass
class TrainResult:
    steps: int  # steps taken in all (fewer than cfg.steps when stopped early)
    seconds: float
    history: list[dict] = field(default_factory=list)  # [{"step", "loss", "lr"}], every log_every steps
    resumed_from: int = 0
    stopped_early: bool = False


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, foreach=False)


CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"  # the checkpoint before the latest one (a fallback if the latest is damaged)


def _save_checkpoint(path: Path, model, opt, step: int, history: list, seconds: float, stopped: bool = False) -> None:
    """Write a checkpoint of tensors and plain values only (loadable with ``weights_only=True``),
    atomically: to a unique temp file in the same folder (two writers never share a name), then
    renamed; the checkpoint it replaces is kept as :data:`PREVIOUS`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "history": history,
                    "seconds": seconds,
                    "stopped": stopped,
                },
                f,
            )
        if path.exists():
            os.replace(path, path.with_name(PREVIOUS))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "step": int, "history": list, "seconds": float, "stopped": bool}


def _read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, read with ``weights_only=True`` (no arbitrary objects are unpickled);
    raises ValueError saying what is wrong with the file (truncated, not a checkpoint, foreign objects)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, … depending on the damage
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{type(err).__name__}: {first[:160]}") from None
    if not isinstance(state, dict) or any(not isinstance(state.get(k), t) for k, t in _CHECKPOINT_KEYS.items()):
        raise ValueError(f"not a training checkpoint (expected a dict with {', '.join(_CHECKPOINT_KEYS)})")
    return state


def load_checkpoint(ckdir: Path, say: Callable[[str], None] = print) -> dict | None:
    """The newest readable checkpoint in ``ckdir`` (the latest, else the previous one), or None.

    A checkpoint that cannot be read safely is renamed to ``<name>.damaged`` (kept for inspection,
    never read again) and the fallback is said in one line through ``say``.
    """
    for name in (CHECKPOINT, PREVIOUS):
        path = ckdir / name
        if not path.exists():
            continue
        try:
            return _read_checkpoint(path)
        except ValueError as why:
            aside = path.with_name(path.name + ".damaged")
            os.replace(path, aside)
            rest = ckdir / PREVIOUS
            then = (
                f"resuming from {rest.name}"
                if name == CHECKPOINT and rest.exists()
                else "restarting this phase from step 0"
            )
            say(f"[effdepth] training checkpoint {path} is unreadable ({why}); set aside as {aside.name}, {then}.")
    return None


def train(
    model: torch.nn.Module,
    data: Sequence[dict] | Callable[[], Iterator[dict]],
    cfg: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    progress: bool | str = True,
    callback: Callable[[int, torch.nn.Module], dict | None] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.steps`` steps on ``data``; resume from ``checkpoint_dir`` if it holds a checkpoint.

    data: a sequence of batches (step i uses ``data[i % len(data)]``) or a zero-argument callable
    returning a fresh iterator of batches (re-created and advanced past consumed batches on resume;
    it must yield at least ``cfg.steps`` batches). Batches are dicts from :func:`batches`.
    The model's forward must accept ``input_ids`` and return an object with ``.logits``.
    A checkpoint (model, optimiser, step, loss history) is written atomically every
    ``cfg.checkpoint_every`` steps and at the end; it is left in place (the caller removes it).
    ``cfg.stop_below``: stop as soon as a logged loss is below it (the checkpoint records the
    stop, so a resumed call returns at once).
    callback(step, model), if given, runs at every logging step (model in eval mode, no grad); a
    dict it returns is added to that step's history record (e.g. held-out accuracy during training).
    """
    if cfg.loss_on not in ("all", "answer"):
        raise ValueError(f"loss_on must be 'all' or 'answer', got '{cfg.loss_on}'.")
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(model, data, cfg, Path(checkpoint_dir) if checkpoint_dir else None, progress, callback)
    finally:
        torch.set_num_threads(old_threads)


def _train(model, data, cfg: TrainConfig, ckdir: Path | None, progress, callback) -> TrainResult:
    opt = _optimizer(model, cfg)
    start, history, seconds = 0, [], 0.0
    ck = ckdir / CHECKPOINT if ckdir else None
    state = load_checkpoint(ckdir) if ckdir is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, history, seconds = state["step"], state["history"], state["seconds"]
        if state.get("stopped"):
            model.eval()
            return TrainResult(steps=start, seconds=seconds, history=history, resumed_from=start, stopped_early=True)
    if ckdir is not None:
        ckdir.mkdir(parents=True, exist_ok=True)

    if callable(data):
        it = itertools.islice(data(), start, None)
        get = lambda step: next(it)  # noqa: E731
    else:
        get = lambda step: data[step % len(data)]  # noqa: E731

    model.train()
    desc = progress if isinstance(progress, str) else "train"
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not progress, mininterval=1.0)
    t0 = time.perf_counter()
    window_loss, window_n = 0.0, 0
    step = start
    done = start
    stopped = False
    try:
        for step in range(start, cfg.steps):
            batch = get(step)
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            ids = batch["input_ids"]
            mask = batch["answer_mask"] if cfg.loss_on == "answer" else batch["loss_mask"]
            logits = model(input_ids=ids).logits
            weights = None
            if cfg.loss_on == "all" and cfg.answer_weight != 1.0:
                weights = 1.0 + (cfg.answer_weight - 1.0) * batch["answer_mask"].float()
            if cfg.loss_on == "all" and "loss_weight" in batch:
                weights = batch["loss_weight"] if weights is None else weights * batch["loss_weight"]
            loss, _ = masked_lm_loss(logits, ids, mask, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            window_loss += float(loss.detach())
            window_n += 1
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                record = {"step": done, "loss": window_loss / window_n, "lr": lr}
                if callback is not None:
                    model.eval()
                    with torch.no_grad():
                        record.update(callback(done, model) or {})
                    model.train()
                history.append(record)
                bar.set_postfix(loss=f"{window_loss / window_n:.3f}")
                stopped = cfg.stop_below is not None and window_loss / window_n < cfg.stop_below
                window_loss, window_n = 0.0, 0
            bar.update(1)
            if ck is not None and (stopped or done % cfg.checkpoint_every == 0 or done == cfg.steps):
                _save_checkpoint(ck, model, opt, done, history, seconds + time.perf_counter() - t0, stopped)
            if stopped:
                break
    finally:
        bar.close()
        model.eval()
    return TrainResult(
        steps=done,
        seconds=seconds + time.perf_counter() - t0,
        history=history,
        resumed_from=start,
        stopped_early=stopped,
    )


def save_folder(model, partial: Path, final: Path, report: dict) -> None:
    """Write a finished model (weights, zoo tokenizer, ``report.json``) into ``partial``, drop its
    training checkpoint, and rename it to ``final``: a folder that exists under ``final`` is complete."""
    model.eval()
    model.generation_config.pad_token_id = PAD_ID
    model.cpu().save_pretrained(partial)
    zoo_tokenizer().save_pretrained(partial)
    (partial / "report.json").write_text(json.dumps(report, indent=1))
    for leftover in [partial / CHECKPOINT, partial / PREVIOUS, *partial.glob("checkpoint*.damaged")]:
        leftover.unlink(missing_ok=True)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished model written by :func:`save_folder`."""
    return (folder / "report.json").exists() and (folder / "model.safetensors").exists()
