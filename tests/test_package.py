"""Package-wide properties of the source: nothing in stochrelax executes what it loads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SOURCES = sorted((Path(__file__).resolve().parents[1] / "src" / "stochrelax").rglob("*.py"))

UNSAFE = {  # pattern -> why it is refused
    r"\bimport\s+(c?pickle|dill|marshal|shelve)\b|\bfrom\s+(c?pickle|dill|marshal|shelve)\b": "pickle-like loaders run code",
    r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)": "torch.load without weights_only=True unpickles",
    r"\byaml\.(load|unsafe_load|full_load)\(": "only yaml.safe_load builds no Python objects",
    r"\bnp\.load\([^)]*allow_pickle\s*=\s*True": "np.load with allow_pickle unpickles",
    r"(?<![\w.])(eval|exec)\(": "eval/exec run strings as code",
}


def test_the_scan_covers_the_package() -> None:
    assert len(SOURCES) > 20 and any(path.name == "runs.py" for path in SOURCES)


@pytest.mark.parametrize("pattern", list(UNSAFE))
def test_no_source_file_uses_a_loader_that_executes_code(pattern: str) -> None:
    hits = [f"{path.name}:{number}: {line.strip()}" for path in SOURCES
            for number, line in enumerate(path.read_text().splitlines(), start=1) if re.search(pattern, line)]
    assert not hits, f"{UNSAFE[pattern]}: {hits}"


@pytest.mark.parametrize("line", ["import pickle", "from dill import loads", "state = torch.load(path)",
                                  "yaml.load(text, Loader=yaml.Loader)", "np.load(f, allow_pickle=True)",
                                  "eval(expression)"])
def test_each_pattern_catches_what_it_is_for(line: str) -> None:
    assert any(re.search(pattern, line) for pattern in UNSAFE), line


@pytest.mark.parametrize("line", ["model.eval()", "torch.load(path, weights_only=True)", "yaml.safe_load(text)"])
def test_safe_uses_pass(line: str) -> None:
    assert not any(re.search(pattern, line) for pattern in UNSAFE), line


PACKAGE = Path(__file__).resolve().parents[1] / "src" / "stochrelax"


def import_graph() -> dict[str, set[str]]:
    """Module → the stochrelax modules it imports anywhere in its text (top level, functions, TYPE_CHECKING)."""
    modules = {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
               for path in SOURCES}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stochrelax"):
                for alias in node.names:  # `from stochrelax import runs` imports the module stochrelax.runs
                    child = f"{node.module}.{alias.name}"
                    imported.add(child if child in modules else node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("stochrelax")}
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def test_no_two_modules_import_each_other_directly_or_through_others() -> None:
    graph = import_graph()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append(" → ".join(path[path.index(imported):] + [imported]))
            elif imported not in finished:
                visit(imported, path + [imported])
        finished.add(module)

    finished: set[str] = set()
    for module in sorted(graph):
        if module not in finished:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_building_blocks_never_import_workflows_or_the_cli() -> None:
    graph = import_graph()
    block_names = {"noise", "estimators", "layers", "models", "data", "data_files", "rng", "attacks", "files",
                   "training_strategies", "smoothing"}
    workflow_names = {"cli", "train", "robustness", "attack_table", "attack_rows", "worst_case", "grid", "jobs",
                      "progress", "sweep", "study", "report", "claims", "verdicts", "power", "looks", "results", "plots",
                      "catalog", "certification"}
    blocks = {module for module in graph if module.removeprefix("stochrelax.").split(".")[0] in block_names}
    workflows = {module for module in graph if module.removeprefix("stochrelax.").split(".")[0] in workflow_names}
    assert "stochrelax.attacks.pgd" in blocks and "stochrelax.sweep" in workflows
    assert "stochrelax.smoothing" in blocks and "stochrelax.certification" in workflows
    assert {block: graph[block] & workflows for block in blocks if graph[block] & workflows} == {}


def test_the_import_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "stochrelax.report" in graph["stochrelax.cli.commands"]  # imported where it is needed, not at the top
    assert "stochrelax.runs" in graph["stochrelax.plots.style"]  # `from stochrelax import runs`
