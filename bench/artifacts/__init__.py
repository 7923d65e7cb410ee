"""One module per paper artefact, each defining ``SPECS: dict[str, Spec]`` (STYLE rule 1).

The CLI finds them with ``pkgutil``. An artefact module imports no other artefact module: what several share lives
in ``bench/catalogue.py`` (runs) and ``bench/parts/`` (panels and row builders).
A module may set ``LIST_SEPARATELY = True`` to show each SPECS key as its own entry in ``python -m bench ls``
(figure3's two ablations); otherwise the keys are panels of one entry (figure2's a, b, c).
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

ORDER = ("table1", "table2", "table3", "table4", "table5", "figure2", "figure3", "figure5", "figure7", "memory")


def names() -> list[str]:
    found = {m.name for m in pkgutil.iter_modules(__path__)}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def load(name: str) -> ModuleType:
    return importlib.import_module(f"bench.artifacts.{name}")
