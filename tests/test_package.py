"""Package-wide properties of the source: nothing in stochrelax executes what it loads."""

from __future__ import annotations

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
