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
    assert len(SOURCES) > 20 and any(path.name == "layout.py" for path in SOURCES)


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
                for alias in node.names:  # `from stochrelax import runs` imports the module stochrelax.rundir.layout
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


LAYERS = ("base", "nn", "models", "data", "attacks", "rundir", "evaluation", "training", "analysis", "report",
          "study", "cli")
"""The subpackages from the bottom up: a module imports only from its own subpackage and those below it."""

BLOCKS = frozenset({"nn", "models", "data", "attacks"})
"""Building blocks: on top of ``nn`` (and ``base``), none imports another — attacks work on any classifier,
not on the thesis network, and know nothing of the disk format."""


def layer_of(module: str) -> str:
    """The subpackage a module belongs to (``stochrelax`` itself: the front door, above every layer)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "stochrelax"


def allowed(importer: str, imported: str) -> bool:
    """Whether a module of layer ``importer`` may import one of layer ``imported``."""
    if importer == "stochrelax" or importer == imported or imported == "base":
        return True
    if imported == "stochrelax":  # the front door imports the layers; none of them imports it
        return False
    if importer in BLOCKS and imported in BLOCKS:
        return imported == "nn"
    return LAYERS.index(imported) < LAYERS.index(importer)


def test_every_module_belongs_to_one_layer() -> None:
    stray = [module for module in import_graph() if layer_of(module) not in (*LAYERS, "stochrelax")]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_imports_go_down_the_layers_only() -> None:
    graph = import_graph()
    wrong = sorted(f"{module} ({layer_of(module)}) imports {imported} ({layer_of(imported)})"
                   for module, imports in graph.items() for imported in imports
                   if not allowed(layer_of(module), layer_of(imported)))
    assert not wrong, "imports against the layers " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)


@pytest.mark.parametrize(("importer", "imported", "expected"), [
    ("attacks", "nn", True), ("attacks", "models", False), ("models", "data", False), ("evaluation", "rundir", True),
    ("rundir", "evaluation", False), ("study", "report", True), ("report", "study", False), ("nn", "base", True),
    ("base", "nn", False), ("cli", "study", True), ("training", "stochrelax", False), ("stochrelax", "study", True),
])
def test_the_layer_rule_refuses_what_it_should(importer, imported, expected) -> None:
    assert allowed(importer, imported) is expected


def test_the_import_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "stochrelax.study.reproduce" in graph["stochrelax.cli.commands"]  # imported where needed, not at the top
    assert "stochrelax.rundir.layout" in graph["stochrelax.report.plots.style"]  # `from stochrelax.rundir import layout`


def test_no_module_is_longer_than_500_lines() -> None:
    long = {path.relative_to(PACKAGE).as_posix(): count for path in SOURCES
            if (count := len(path.read_text().splitlines())) > 500}
    assert not long, f"split these modules: {long}"
