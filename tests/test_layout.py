"""The module graph: what may import what (read from the source, nothing imported)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("bench", "models") for p in (ROOT / d).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from module import name`` in ``path``, ("module", "") of every ``import module``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: a relative import; the layout tests read absolute ones"
            out += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names]
    return out


def test_the_sources_are_found():
    assert len(SOURCES) > 50 and any(p.name == "table2.py" for p in SOURCES)


def test_no_module_imports_a_private_name_of_another():
    private = [(p.relative_to(ROOT), m, n) for p in SOURCES for m, n in _imports(p)
               if n.startswith("_") and not n.startswith("__")]
    assert not private


def test_an_artifact_module_imports_no_other_artifact_module():
    artifacts = [p for p in SOURCES if p.parent.name == "artifacts" and p.name != "__init__.py"]
    crossed = [(p.name, m, n) for p in artifacts for m, n in _imports(p)
               if m.startswith("bench.artifacts") and (m != "bench.artifacts" or n not in ("", "names", "load"))]
    assert len(artifacts) >= 10 and not crossed


def test_models_never_imports_the_harness():
    upward = [(p.relative_to(ROOT), m) for p in SOURCES if p.parts[len(ROOT.parts)] == "models"
              for m, _ in _imports(p) if m == "bench" or m.startswith("bench.")]
    assert not upward
