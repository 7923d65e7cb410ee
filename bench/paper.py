"""The paper's numbers, read from ``bench/data/paper_numbers.csv`` (a copy of shared/paper/paper_numbers.csv).

Paper numbers live only there and are only ever shown beside ours, labelled as the paper's.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

CSV_PATH = Path(__file__).parent / "data" / "paper_numbers.csv"


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
