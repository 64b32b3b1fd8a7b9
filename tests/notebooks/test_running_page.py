"""book/running.md states the sizes that make book really runs: its by-hand commands carry exactly the
`--profile` and `--set` options of the Makefile's SMOLLM_SIZES and ZOO_SIZES (the Makefile's own
variables substituted), and SmolLM2's chapters of SMOLLM_CHAPTERS."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def makefile_variable(name: str, text: str | None = None) -> str:
    """The value of `NAME ?= …` / `NAME := …` in the Makefile, continuation lines joined."""
    text = (ROOT / "Makefile").read_text() if text is None else text
    text = text.replace("\\\n", " ")
    m = re.search(rf"^{name}[ \t]*[?:]?=[ \t]*(.*)$", text, re.M)
    assert m, f"{name} not in the Makefile"
    return re.sub(
        r"\$\((\w+)\)",
        lambda v: (
            makefile_variable(v.group(1), text) if re.search(rf"^{v.group(1)}\s*[?:]?=", text, re.M) else v.group(0)
        ),
        m.group(1).strip(),
    )


def set_options(command: str) -> set[str]:
    """The `--set k=v` values and the `--profile` of a shell command line."""
    words = shlex.split(command)
    return {
        ("" if w == "--set" else "profile ") + words[i + 1]
        for i, w in enumerate(words[:-1])
        if w in ("--set", "--profile")
    }


def running_commands(text: str | None = None) -> dict[str, str]:
    """{model spec: its `effdepth run` command} in running.md's first bash block (continuations joined)."""
    text = (ROOT / "book" / "running.md").read_text() if text is None else text
    block = re.search(r"```bash\n(.*?)```", text.split("The same by hand", 1)[1], re.S).group(1).replace("\\\n", " ")
    out = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == [".venv/bin/effdepth", "run"]:
            out[words[words.index("--model") + 1]] = line
    return out


def test_running_page_states_the_sizes_the_makefile_runs():
    commands = running_commands()
    smollm, zoo = makefile_variable("SMOLLM"), makefile_variable("MODEL")
    assert smollm in commands and zoo in commands, commands
    assert set_options(commands[smollm]) == set_options(makefile_variable("SMOLLM_SIZES"))
    assert set_options(commands[zoo]) == set_options(makefile_variable("ZOO_SIZES"))
    chapters = shlex.split(commands[smollm])
    listed = set(chapters[chapters.index("--chapters") + 1].split(","))
    assert listed == set(re.split(r"[,+]", makefile_variable("SMOLLM_CHAPTERS")))


def test_the_check_fails_on_a_page_with_other_sizes():
    page = (ROOT / "book" / "running.md").read_text().replace("--profile cpu", "--profile paper")
    smollm = makefile_variable("SMOLLM")
    assert set_options(running_commands(page)[smollm]) != set_options(makefile_variable("SMOLLM_SIZES"))
