"""The paper's real datasets through `datasets.load_dataset`, each with a local-file override.

Every row, from a file or the Hub, is checked against the data set's schema (`SCHEMAS`, checked by
`rows.check_rows`): a malformed file is one `DataError` naming the file, the row and what was expected.

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
import re
from pathlib import Path

from effdepth.access import hub as hf_hub
from effdepth.data.examples import Example
from effdepth.data.rows import DataError, DatasetNotAvailable, Field, Rows, Schema, check_rows, read_rows, sample

__all__ = ["DataError", "DatasetNotAvailable", "gsm8k", "math_problems", "mquake", "final_answer"]

GSM8K_TEMPLATE = (
    "Given the following problem, reason and give a final answer to the problem.\n"
    "Problem: {question}\n"
    'Your response should end with "The final answer is [answer]" where [answer] is the response to the problem.\n\n'
)


def _one_final_answer(answer: str) -> str | None:
    """GSM8K's rule: the worked solution, then exactly one '#### <final answer>'."""
    marks = answer.count("####")
    if marks == 0:
        return "the answer has no '#### <final answer>' line"
    if marks > 1:
        return f"the answer has {marks} '####' markers; expected exactly one, before the final answer"
    if not answer.split("####")[1].strip():
        return "nothing follows '####'; expected the final answer after it"
    return None


def _non_empty_strings(values: list) -> str | None:
    if not values or not all(isinstance(v, str) for v in values):
        return "expected a non-empty list of question strings"
    return None


SCHEMAS = {
    "GSM8K": Schema(
        "GSM8K",
        (
            Field("question", str, "the problem, a string"),
            Field("answer", str, "the worked solution ending in '#### <final answer>'", _one_final_answer),
        ),
    ),
    "MATH": Schema(
        "MATH",
        (
            Field("problem", str, "the problem, a string"),
            Field("level", str, "the difficulty, a string like 'Level 3'"),
            Field("solution", str, "the worked solution, a string"),
        ),
    ),
    "MQuAKE-Remastered": Schema(
        "MQuAKE-Remastered",
        (
            Field("questions", list, "a list of question strings", _non_empty_strings),
            Field("answer", str, "the answer, a string"),
            Field("orig.triples", list, "the original fact triples, one per hop"),
        ),
    ),
}


def _from_datasets_cache(repo: str, config: str, split: str) -> list | None:
    """The rows of a Hub data set that `datasets` downloaded earlier (its cache, read in offline mode),
    or None when it is not there."""
    import datasets

    before = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True  # read the cache only; never wait on the network
    try:
        return datasets.load_dataset(repo, config, split=split).to_list()
    except Exception:  # not cached (or a damaged cache entry): the caller says what to do
        return None
    finally:
        datasets.config.HF_HUB_OFFLINE = before


def _provenance(rows: Rows) -> dict:
    """{'file', 'sha256'} of rows read from a local file (recorded in every example's meta), else {}."""
    return {"file": rows.file, "sha256": rows.sha256} if rows.file else {}


def _records(name: str, hub: tuple, env: str, path: str | os.PathLike | None) -> Rows:
    """Rows of a dataset from `path`, `$env`, or the Hub (in that order), checked against its schema."""
    path = path or os.environ.get(env)
    if path:
        path = Path(path).expanduser()
        if not path.exists():
            raise DatasetNotAvailable(
                f"{name}: no file at {path} (from {'path=' if not os.environ.get(env) else '$' + env})."
            )
        return check_rows(read_rows(name, path), SCHEMAS[name])

    repo, config, split = hub
    if not hf_hub.reachable():
        table = _from_datasets_cache(repo, config, split)
        if table is None:
            raise DatasetNotAvailable(
                f"{name} is not available offline: the Hugging Face Hub cannot be reached and `{repo}` is not in "
                f"the datasets cache. Download it on a connected machine and point to the file with path=... or ${env}."
            )
        return check_rows(
            Rows(
                f"{name} ({repo} {config}, {split}, from the datasets cache)",
                table,
                [f"row {i + 1}" for i in range(len(table))],
            ),
            SCHEMAS[name],
        )
    import datasets

    try:
        table = datasets.load_dataset(repo, config, split=split).to_list()
    except Exception as err:  # network errors, missing configs, …
        raise DatasetNotAvailable(f"{name}: loading {repo} failed ({err}). Use path=... or ${env}.") from err
    return check_rows(
        Rows(f"{name} ({repo} {config}, {split})", table, [f"row {i + 1}" for i in range(len(table))]), SCHEMAS[name]
    )


def gsm8k(n: int | None = 20, seed: int = 0, path=None) -> list[Example]:
    """GSM8K test problems formatted as the methods page §8 says: the prompt carries the gold worked solution.

    `prompt` is the instruction + problem; `answer` is the worked solution (before '####') followed
    by "The final answer is {final}". `meta['index']` is the row in the test split. `n`: exactly
    this many (more than the file holds is a `DataError`), None for all.
    """
    rows = _records("GSM8K", ("openai/gsm8k", "main", "test"), "EFFDEPTH_GSM8K", path)
    out = []
    for i in sample(len(rows), n, seed, f"{rows.source} has {len(rows)} rows"):
        row = rows[i]
        solution, final = row["answer"].split("####")
        answer = f"{solution.strip()}\nThe final answer is {final.strip()}"
        out.append(
            Example(
                GSM8K_TEMPLATE.format(question=row["question"]),
                answer,
                None,
                {"dataset": "gsm8k", "index": i, "seed": seed, **_provenance(rows)},
            )
        )
    return out


def _subject_of(row) -> str:
    return str(row.get("type", "")).lower().replace(" ", "_")


def math_problems(
    level: int, n: int | None = 20, seed: int = 42, subject: str = "intermediate_algebra", path=None
) -> list[Example]:
    """MATH test problems of one level (1–5): "Problem: {problem}\\nAnswer:" + " {solution}" (methods page §4).

    Rows whose `type` names another subject are left out (a file without `type` fields is taken to
    be of `subject`). `n`: exactly this many (more than the level has is a `DataError`), None for all.
    """
    rows = _records("MATH", ("EleutherAI/hendrycks_math", subject, "test"), "EFFDEPTH_MATH", path)
    subject = subject.lower().replace(" ", "_")
    typed = [i for i in range(len(rows)) if "type" in rows[i]]
    mine = [i for i in range(len(rows)) if "type" not in rows[i] or _subject_of(rows[i]) == subject]
    if typed and not any(_subject_of(rows[i]) == subject for i in typed):
        present = sorted({str(rows[i]["type"]) for i in typed})
        raise rows.error(
            None, f"no rows of subject '{subject}' (types present: {', '.join(present)}); pass subject= one of those."
        )
    wanted = f"Level {level}"
    keep = [i for i in mine if rows[i]["level"] == wanted]
    if not keep:
        present = sorted({rows[i]["level"] for i in mine})
        raise rows.error(None, f"no rows of level '{wanted}' ({subject}); levels present: {', '.join(present)}.")
    out = []
    for j in sample(len(keep), n, seed, f"{rows.source} has {len(keep)} rows of {wanted} ({subject})"):
        row = rows[keep[j]]
        out.append(
            Example(
                f"Problem: {row['problem']}\nAnswer:",
                f" {row['solution']}",
                level,
                {"dataset": "math", "index": keep[j], "seed": seed, **_provenance(rows)},
            )
        )
    return out


def mquake(hops: int, n: int | None = 20, seed: int = 42, path=None) -> list[Example]:
    """MQuAKE-Remastered CF3k questions with `hops` original triples: "Question: {q}\\nAnswer:" + " {answer}".

    `n`: exactly this many (more than there are of `hops` hops is a `DataError`), None for all.
    """
    rows = _records("MQuAKE-Remastered", ("henryzhongsc/MQuAKE-Remastered", "CF3k", "train"), "EFFDEPTH_MQUAKE", path)
    keep = [i for i in range(len(rows)) if len(rows[i]["orig"]["triples"]) == hops]
    if not keep:
        present = sorted({len(rows[i]["orig"]["triples"]) for i in range(len(rows))})
        raise rows.error(
            None,
            f"no rows with {hops} hops (orig.triples of length {hops}); hops present: {', '.join(map(str, present))}.",
        )
    out = []
    for j in sample(len(keep), n, seed, f"{rows.source} has {len(keep)} rows of {hops} hops"):
        row = rows[keep[j]]
        out.append(
            Example(
                f"Question: {row['questions'][0]}\nAnswer:",
                f" {row['answer']}",
                hops,
                {"dataset": "mquake", "index": keep[j], "seed": seed, **_provenance(rows)},
            )
        )
    return out


def final_answer(text: str) -> str:
    """The text after the last '####' (GSM8K) or 'The final answer is' (the prompt's instruction
    names the phrase too, so the last occurrence is the answer)."""
    found = re.findall(r"(?:####|The final answer is)\s*([^\n]+)", text)
    return found[-1].strip() if found else ""
