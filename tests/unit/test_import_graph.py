"""The package's layering, read from its source: no import cycle between effdepth's modules, no import
inside a function except of the named heavy optional dependencies below, and no module importing the
package root `effdepth` (the root imports the public API from the modules; a module reaching back
into it would close a cycle through every module)."""

import ast
from pathlib import Path

import effdepth

PACKAGE = Path(effdepth.__file__).parent

# Imported inside the function that needs them, and only there, each for a stated reason.
HEAVY_OPTIONAL = {
    "nnsight": "traces and NDIF only; 2 s to import",
    "transformers": "model building and loading only; its modelling stack takes 2-5 s to import",
    "tokenizers": "transformers' tokenizer library, built into a transformers tokenizer where it is used",
    "effdepth.access.moeut": "defines a transformers architecture at import (the modelling stack above)",
    "datasets": "Hub data sets only (offline runs never need it)",
    "mathematics_dataset": "the §3.5 problem generator; needs an import shim for current sympy",
    "gguf": "GGUF conversion only",
    "statsmodels": "Fig 1's regression only",
    "matplotlib": "figures only (global rcParams)",
    "papermill": "the notebook stack: running chapters only",
    "jupytext": "the notebook stack",
    "nbformat": "the notebook stack",
    "myst_nb": "the notebook stack",
    "jupyter_client": "the notebook stack",
    "IPython": "the notebook stack: display in a kernel only",
    "ipywidgets": "the notebook stack: widgets in a kernel only",
    "pygments": "the notebook stack: highlighted solutions in the course only",
}


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _targets(module: str, path: Path, node, modules: dict) -> list[str]:
    """The modules an import statement names (resolved when relative)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_problems(root: Path, allowed=HEAVY_OPTIONAL) -> list[str]:
    """Every violation of the layering rules in the package at `root` (one line each)."""
    modules = _modules(root)
    package = root.name
    edges, problems = {m: set() for m in modules}, []
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = _targets(module, path, node, modules)
            inside, q = False, node
            while q in parents and not inside:
                q = parents[q]
                inside = isinstance(q, (ast.FunctionDef, ast.AsyncFunctionDef))
            if inside and not all(n in allowed or n.split(".")[0] in allowed for n in names):
                problems.append(
                    f"{path.relative_to(root.parent)}:{node.lineno}: import inside a function: {', '.join(names)}"
                )
            for name in names:
                if name == package and module != package:
                    problems.append(
                        f"{path.relative_to(root.parent)}:{node.lineno}: imports the package root '{package}'"
                    )
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module and name != package:
                    edges[module].add(name)
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(edges)]
    return problems


def _cycles(edges: dict[str, set]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_effdepth_has_no_cycle_no_function_level_import_and_no_import_of_its_root():
    problems = import_problems(PACKAGE)
    assert not problems, "\n".join(problems)


def test_the_check_finds_each_kind_of_violation(tmp_path):
    """The rule on a package made to break it: a cycle, an import inside a function, a reach into the root."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("from pkg.b import g\n\ndef f():\n    import json\n    return g()\n")
    (pkg / "b.py").write_text(
        "from . import a\n\ndef g():\n    from transformers import AutoConfig\n    return AutoConfig\n"
    )
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("import pkg\nfrom .. import b\n")
    problems = import_problems(pkg)
    assert any("import inside a function: json" in p for p in problems)
    assert not any("transformers" in p for p in problems)  # a named heavy optional dependency
    assert any("imports the package root 'pkg'" in p and "c.py" in p for p in problems)
    assert any(p == "import cycle: pkg.a -> pkg.b" for p in problems)
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    (pkg / "a.py").write_text("from pkg.b import g\n\ndef f():\n    return g()\n")
    (pkg / "sub" / "c.py").write_text("from pkg import b\n")
    assert import_problems(pkg) == []
