"""The published numbers of open base models and the paper's regression on them (Fig 1 / App. B, methods page §7).

The paper plots the Open LLM Leaderboard score of base models against their number of layers and
regresses score ~ depth + d_model + d_ff (d_ff × 1.5 for gated MLPs, whose three matrices hold
1.5× the parameters of a two-matrix MLP of the same d_ff). The leaderboard is not reachable
offline, so the book ships a small frozen table of facts (`effdepth/data/open_models.csv`): per
model its family, the architecture numbers of its published config.json, the parameter count, its
MMLU (5-shot) score as reported by its developers, and where each number comes from. On a
connected machine `live_table()` reads the leaderboard's data set instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from effdepth.access import hub
from effdepth.errors import LiveUnavailable

FROZEN = Path(__file__).resolve().parent / "open_models.csv"
COLUMNS = (
    "model",
    "family",
    "layers",
    "d_model",
    "d_ff",
    "gated_mlp",
    "params_b",
    "score",
    "architecture_source",
    "score_source",
)
LEADERBOARD = "open-llm-leaderboard/contents"
SOURCES = ("auto", "frozen", "live")


def frozen_table(path: str | Path = FROZEN) -> pd.DataFrame:
    """The frozen table (one row per model, `score` = MMLU 5-shot in %, `params_b` in billions),
    with `d_ff_eff` = d_ff × 1.5 for gated MLPs. Raises ValueError naming a missing column."""
    df = pd.read_csv(path).rename(columns={"mmlu": "score"})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}.")
    return _derived(df)


def _derived(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["gated_mlp"] = df["gated_mlp"].astype(str).str.lower().isin(("true", "1", "yes"))
    df["d_ff_eff"] = df["d_ff"] * np.where(df["gated_mlp"], 1.5, 1.0)
    return df.reset_index(drop=True)


def _column(frame: pd.DataFrame, *words: str) -> str:
    for c in frame.columns:
        if all(w.lower() in c.lower() for w in words):
            return c
    raise LiveUnavailable(
        f"the leaderboard table has no column with {' '.join(words)!r} (columns: {', '.join(frame.columns[:12])}, …)"
    )


def live_table(max_models: int = 200, min_params_b: float = 0.1) -> pd.DataFrame:
    """Pretrained models of the Open LLM Leaderboard (v2 average score) with their architecture
    numbers read from each model's config.json on the Hub; needs network access.

    Raises LiveUnavailable (one line) when the data set or the Hub cannot be reached."""
    try:
        from datasets import load_dataset

        board = load_dataset(LEADERBOARD, split="train").to_pandas()
    except Exception as err:  # offline, renamed data set, auth: all mean "use the frozen table"
        raise LiveUnavailable(
            f"cannot read {LEADERBOARD}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    name, score, kind, size = (
        _column(board, "fullname"),
        _column(board, "average"),
        _column(board, "type"),
        _column(board, "params"),
    )
    board = board[board[kind].astype(str).str.contains("pretrained", case=False) & (board[size] >= min_params_b)]
    board = board.sort_values(score, ascending=False).drop_duplicates(name).head(max_models)
    from transformers import AutoConfig

    rows = []
    for _, r in board.iterrows():
        try:
            cfg = AutoConfig.from_pretrained(r[name], trust_remote_code=False)
        except Exception:  # gated or removed repositories: skipped, counted in the note
            continue
        cfg = getattr(cfg, "text_config", None) or cfg
        layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
        d = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
        dff = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or (4 * d if d else None)
        if not (layers and d and dff):
            continue
        gated = str(getattr(cfg, "hidden_act", "")).lower() in (
            "silu",
            "swish",
            "gelu_pytorch_tanh",
        ) and cfg.model_type not in ("gpt2", "gpt_neox", "phi")
        rows.append(
            {
                "model": r[name],
                "family": cfg.model_type,
                "layers": int(layers),
                "d_model": int(d),
                "d_ff": int(dff),
                "gated_mlp": gated,
                "params_b": float(r[size]),
                "score": float(r[score]),
                "architecture_source": "config.json on the Hub",
                "score_source": f"{LEADERBOARD} (average)",
            }
        )
    if not rows:
        raise LiveUnavailable("no leaderboard model had a readable config.json")
    return _derived(pd.DataFrame(rows))


def load_table(source: str = "auto") -> tuple[pd.DataFrame, str]:
    """(table, a sentence saying where its rows come from). source: 'frozen', 'live', or 'auto'
    (live when the Hub is reachable and HF_HUB_OFFLINE is not set, else frozen, said in the note)."""

    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    frozen_note = f"the frozen table shipped with effdepth ({len(frozen_table())} models; MMLU 5-shot as reported by the models' developers)"
    if source == "frozen":
        return frozen_table(), frozen_note
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ) not in ("0", "")
    if source == "auto":
        if offline or not hub.reachable():
            return frozen_table(), frozen_note + ": the live leaderboard was not reachable from this machine"
    try:
        table = live_table()
    except LiveUnavailable as err:
        if source == "live":
            raise
        return frozen_table(), frozen_note + f": the live leaderboard could not be read ({err})"
    return table, f"the live Open LLM Leaderboard ({len(table)} pretrained models, v2 average score)"


def depth_fit(df: pd.DataFrame, x: str = "layers", y: str = "score"):
    """OLS y ~ x (statsmodels results), for the line and its 95 % confidence band."""
    import statsmodels.formula.api as smf

    return smf.ols(f"{y} ~ {x}", data=df).fit()


def regression(df: pd.DataFrame, y: str = "score"):
    """OLS y ~ layers + d_model + d_ff_eff (methods page §7; d_ff × 1.5 for gated MLPs), statsmodels results."""
    import statsmodels.formula.api as smf

    if len(df) < 5:
        raise ValueError(f"the regression needs at least 5 models, the table has {len(df)}.")
    return smf.ols(f"{y} ~ layers + d_model + d_ff_eff", data=df).fit()


def coefficient_table(fit) -> pd.DataFrame:
    """coef, std err, t, p and the 95 % interval of each term of a statsmodels OLS fit."""
    ci = fit.conf_int(0.05)
    return pd.DataFrame(
        {
            "coef": fit.params,
            "std err": fit.bse,
            "t": fit.tvalues,
            "p": fit.pvalues,
            "95% low": ci[0],
            "95% high": ci[1],
        }
    )
