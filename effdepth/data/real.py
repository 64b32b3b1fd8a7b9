"""The paper's real datasets through `datasets.load_dataset`, each with a local-file override.

Offline (no Hugging Face Hub) a loader fails at once with a message naming the override: pass
`path=` or set the environment variable named below to a local copy in the Hub file's format.

| dataset | Hub id | override variable | local format |
| --- | --- | --- | --- |
| GSM8K | openai/gsm8k, main, test | EFFDEPTH_GSM8K | test.jsonl (question, answer) |
| MATH | EleutherAI/hendrycks_math, intermediate_algebra, test | EFFDEPTH_MATH | .jsonl/.json (problem, level, solution) |
| MQuAKE-Remastered CF3k | henryzhongsc/MQuAKE-Remastered, CF3k | EFFDEPTH_MQUAKE | .json/.jsonl (questions, answer, orig.triples) |
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from .examples import Example


class DatasetNotAvailable(RuntimeError):
    """A real dataset that is neither reachable on the Hub nor given as a local file."""


GSM8K_TEMPLATE = (
    "Given the following problem, reason and give a final answer to the problem.\n"
    "Problem: {question}\n"
    'Your response should end with "The final answer is [answer]" where [answer] is the response to the problem.\n\n'
)


def _records(name: str, hub: tuple, env: str, path: str | os.PathLike | None):
    """Rows of a dataset from `path`, `$env`, or the Hub (in that order)."""
    import datasets

    path = path or os.environ.get(env)
    if path:
        path = Path(path).expanduser()
        if not path.exists():
            raise DatasetNotAvailable(f"{name}: no file at {path} (from {'path=' if not os.environ.get(env) else '$' + env}).")
        return datasets.load_dataset("json", data_files=str(path), split="train")
    from ..models import _hub_reachable

    if not _hub_reachable():
        raise DatasetNotAvailable(
            f"{name} is not available offline: the Hugging Face Hub cannot be reached. Download "
            f"`{hub[0]}` on a connected machine and point to the file with path=... or ${env}."
        )
    repo, config, split = hub
    try:
        return datasets.load_dataset(repo, config, split=split)
    except Exception as err:  # network errors, missing configs, …
        raise DatasetNotAvailable(f"{name}: loading {repo} failed ({err}). Use path=... or ${env}.") from err


def _sample(n_rows: int, n: int | None, seed: int) -> list[int]:
    """A seeded random sample of row indices (SPEC §8: random, not the first N), in sample order."""
    idx = list(range(n_rows))
    random.Random(seed).shuffle(idx)
    return idx if n is None else idx[:n]


def gsm8k(n: int | None = 20, seed: int = 0, path=None) -> list[Example]:
    """GSM8K test problems formatted as SPEC §8: the prompt carries the gold worked solution.

    `prompt` is the instruction + problem; `answer` is the worked solution (before '####') followed
    by "The final answer is {final}". `meta['index']` is the row in the test split.
    """
    rows = _records("GSM8K", ("openai/gsm8k", "main", "test"), "EFFDEPTH_GSM8K", path)
    out = []
    for i in _sample(len(rows), n, seed):
        row = rows[i]
        solution, final = row["answer"].split("####")
        answer = f"{solution.strip()}\nThe final answer is {final.strip()}"
        out.append(Example(GSM8K_TEMPLATE.format(question=row["question"]), answer, None, {"dataset": "gsm8k", "index": i, "seed": seed}))
    return out


def math_problems(level: int, n: int | None = 20, seed: int = 42, subject: str = "intermediate_algebra", path=None) -> list[Example]:
    """MATH test problems of one level (1–5): "Problem: {problem}\\nAnswer:" + " {solution}" (SPEC §4c)."""
    rows = _records("MATH", ("EleutherAI/hendrycks_math", subject, "test"), "EFFDEPTH_MATH", path)
    wanted = f"Level {level}"
    keep = [i for i in range(len(rows)) if rows[i]["level"] == wanted and rows[i].get("type", subject).lower().replace(" ", "_") in (subject, subject.replace("_", " "))]
    if not keep:
        keep = [i for i in range(len(rows)) if rows[i]["level"] == wanted]
    out = []
    for j in _sample(len(keep), n, seed):
        row = rows[keep[j]]
        out.append(Example(f"Problem: {row['problem']}\nAnswer:", f" {row['solution']}", level, {"dataset": "math", "index": keep[j], "seed": seed}))
    return out


def mquake(hops: int, n: int | None = 20, seed: int = 42, path=None) -> list[Example]:
    """MQuAKE-Remastered CF3k questions with `hops` original triples: "Question: {q}\\nAnswer:" + " {answer}"."""
    rows = _records("MQuAKE-Remastered", ("henryzhongsc/MQuAKE-Remastered", "CF3k", "train"), "EFFDEPTH_MQUAKE", path)
    keep = [i for i in range(len(rows)) if len(rows[i]["orig"]["triples"]) == hops]
    out = []
    for j in _sample(len(keep), n, seed):
        row = rows[keep[j]]
        out.append(Example(f"Question: {row['questions'][0]}\nAnswer:", f" {row['answer']}", hops, {"dataset": "mquake", "index": keep[j], "seed": seed}))
    return out


def final_answer(text: str) -> str:
    """The text after the last '####' (GSM8K) or 'The final answer is' (the prompt's instruction
    names the phrase too, so the last occurrence is the answer)."""
    found = re.findall(r"(?:####|The final answer is)\s*([^\n]+)", text)
    return found[-1].strip() if found else ""
