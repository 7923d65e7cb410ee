"""The paper's numbers, read from ``bench/data/paper_numbers.csv`` (a copy of shared/paper/paper_numbers.csv).

Paper numbers live only there and are only ever shown beside ours, labelled as the paper's. Numbers the paper's
extracted text lacks but a secondary source quotes (Figure 5's appendix values) live in
``bench/data/secondary_numbers.csv`` with their source, and are labelled "secondary" wherever shown.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

CSV_PATH = Path(__file__).parent / "data" / "paper_numbers.csv"
SECONDARY_CSV_PATH = Path(__file__).parent / "data" / "secondary_numbers.csv"


@lru_cache(maxsize=1)
def rows() -> tuple[dict[str, str], ...]:
    with open(CSV_PATH, newline="") as f:
        return tuple(csv.DictReader(f))


def select(artifact: str, **filters: str) -> list[dict[str, str]]:
    """CSV rows of ``artifact`` whose columns equal every filter."""
    return [r for r in rows() if r["artifact"] == artifact and all(r.get(k, "") == v for k, v in filters.items())]


def values(artifact: str, **filters: str) -> dict[str, float]:
    """``{metric: value}`` of the selected rows; raises if one metric appears twice (an ambiguous selection)."""
    out: dict[str, float] = {}
    for r in select(artifact, **filters):
        if r["metric"] in out:
            raise ValueError(f"paper selection {artifact} {filters} is ambiguous for metric {r['metric']!r}")
        out[r["metric"]] = float(r["value"])
    return out


def artifacts() -> list[str]:
    return sorted({r["artifact"] for r in rows()})


def secondary(artifact: str, metric: str) -> dict[str, float]:
    """``{row: value}`` of ``metric`` for ``artifact`` from the secondary-source CSV (insertion order kept)."""
    with open(SECONDARY_CSV_PATH, newline="") as f:
        return {r["row"]: float(r["value"]) for r in csv.DictReader(f)
                if r["artifact"] == artifact and r["metric"] == metric}
