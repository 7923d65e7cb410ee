"""Specs: one frozen, declarative object per paper artefact (STYLE rules 1-2).

A ``Spec`` lists the rows of a paper table or the series of a figure. Each ``Row`` names the run that produces its
numbers (``RunRef``: a typed eval config of ``bench.configs``, with per-scale changes) and the paper's numbers for it
(``PaperRef``: a selection of ``bench/data/paper_numbers.csv``). The runner (``bench.runner``) is a thin loop over
rows; nothing in it knows about a particular artefact.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from bench.configs import (
    ClaimConfig,
    ConfigError,
    EvalConfig,
    to_json,
    training_steps,
    with_changes,
)
from bench.scales import SCALES


@dataclass(frozen=True)
class RunRef:
    """A run: a typed eval config (``bench.configs``), with per-scale changes.

    ``at[scale]`` maps field names to the values that scale uses (``dataclasses.replace``; a misspelled field is a
    one-line ``ConfigError``); ``at[scale] = None`` means the row is not run at that scale. Example::

        RunRef(ReconConfig("dc-ae-f64c128-in-1.0", 512, dataset=folder("imagenet-val"), weights=True),
               at={"small": {"model": "dc-ae-f64c128-tiny", "resolution": 128, "checkpoint": TrainAEConfig(...)}})
    """

    config: EvalConfig
    at: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.config, EvalConfig):
            raise ConfigError(f"RunRef takes a config of bench.configs (ReconConfig, ...), got {self.config!r}")
        bad = set(self.at) - set(SCALES)
        if bad:
            raise ConfigError(f"RunRef({self.eval!r}).at has unknown scales {sorted(bad)}; use {list(SCALES)}")

    @property
    def eval(self) -> str:
        return self.config.EVAL

    def runs_at(self, scale: str) -> bool:
        return not (scale in self.at and self.at[scale] is None)

    def resolve(self, scale: str) -> EvalConfig:
        """The config this run uses at ``scale``."""
        return with_changes(self.config, self.at.get(scale))

    def __hash__(self) -> int:  # the overrides are dicts: hash their JSON text
        return hash((self.eval, json.dumps(to_json(self.config), sort_keys=True),
                     json.dumps({k: to_json(dict(v)) if v else v for k, v in self.at.items()}, sort_keys=True,
                                default=repr)))


@dataclass(frozen=True)
class PaperRef:
    """Selects the paper's numbers for one row from ``paper_numbers.csv``.

    Filters are exact string matches on the CSV columns (``setting``, ``backbone``, ``autoencoder``, ``patch``,
    ``tokens``, ``note``); ``artifact`` defaults to the spec's own id (set it to read e.g. the ``abstract`` rows).
    """

    artifact: str | None = None
    setting: str | None = None
    backbone: str | None = None
    autoencoder: str | None = None
    patch: str | None = None
    tokens: str | None = None
    note: str | None = None  # e.g. Table 3's dagger rows differ from their twins only by the note; "" = no note

    def filters(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "artifact"}


@dataclass(frozen=True)
class Column:
    """A metric shown by the artefact. ``lower_is_better`` is None where there is no direction (e.g. a count)."""

    metric: str
    label: str
    lower_is_better: bool | None = None
    fmt: str = ".4g"
    text: bool = False  # the value is a word (a claim's verdict), shown in the ours cell as it is


@dataclass(frozen=True)
class Row:
    """One paper row (or one point/series of a figure).

    Exactly one of ``run`` (measured by an eval) or ``derive`` (computed from other rows' metrics, e.g. a speed-up
    ratio) is normally set; a row with neither shows the paper's numbers only, with ``note`` saying why ours is
    missing. ``derive(metrics_by_label) -> {metric: value}`` receives the metrics of every run row of the spec.
    A derived row without ``paper`` gets its paper cells by applying the same ``derive`` to the paper's numbers of
    those rows (so the paper's speed-up 6706/351 sits beside ours, computed from the CSV, never typed in).
    """

    label: str
    run: RunRef | None = None
    paper: PaperRef | None = None
    derive: Callable[[Mapping[str, Mapping[str, Any]]], Mapping[str, Any]] | None = None
    note: str = ""


@dataclass(frozen=True)
class Spec:
    """One paper artefact (or one panel/ablation of it).

    ``scales`` says, per scale, what that scale changes and the expected runtime on the reference machine
    (STYLE rule 14). ``plot(df, results, out_png)`` draws the figure; ``not_implemented`` makes the CLI say so in
    one line and exit non-zero instead of producing anything.
    """

    id: str
    title: str
    caption: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    version: int = 1
    scales: Mapping[str, str] = field(default_factory=dict)
    plot: Callable[..., None] | None = None
    not_implemented: str | None = None
    deviations: tuple[str, ...] = ()

    def validate(self) -> list[str]:
        """Problems with this spec, as sentences (empty when valid). Runs nothing."""
        problems = []
        labels = [r.label for r in self.rows]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            problems.append(f"{self.id}: duplicate row labels {dupes}")
        if not self.columns and self.not_implemented is None:
            problems.append(f"{self.id}: no columns")
        if self.not_implemented is None:
            missing = [s for s in SCALES if s not in self.scales]
            if missing:
                problems.append(f"{self.id}: no description for scales {missing}")
        return problems + self._unequal_claims()

    def _unequal_claims(self) -> list[str]:
        """A claim whose arms were trained for different numbers of steps confounds its effect with training time."""
        problems = []
        for row in self.rows:
            if row.run is None or not isinstance(row.run.config, ClaimConfig):
                continue
            for scale in SCALES:
                if row.run.runs_at(scale):
                    cfg = row.run.resolve(scale)
                    steps = {training_steps(arm, scale) for arm in cfg.arm_a + cfg.arm_b + cfg.base_a + cfg.base_b}
                    if len(steps) > 1:
                        problems.append(f"{self.id} row {row.label!r}: its arms train for different numbers of "
                                        f"steps at {scale} scale ({sorted(steps)}); give both the same schedule")
        return problems


# --------------------------------------------------------------------------------------------------------------
# Claim rows: one rule for every claim (bench/stats.py), built from the spec's own rows
# --------------------------------------------------------------------------------------------------------------

CLAIM_COLUMNS = (
    Column("verdict", "verdict", text=True),
    Column("diff", "a - b", fmt=".3g"),
    Column("ci_lo", "90% CI low", fmt=".3g"),
    Column("ci_hi", "90% CI high", fmt=".3g"),
    Column("n_seeds", "seeds", fmt=".0f"),
    Column("image_groups", "images resampled by", text=True),
    Column("pairing", "seeds", text=True),
    Column("df", "df", fmt=".1f"),
    Column("p_value", "p", fmt=".2g"),
    Column("power", "power", text=True),
    Column("kind", "kind", text=True),
    Column("test_id", "test", text=True),
    Column("mean_a", "a mean", fmt=".4g"),
    Column("sd_a", "a sd", fmt=".3g"),
    Column("mean_b", "b mean", fmt=".4g"),
    Column("sd_b", "b sd", fmt=".3g"),
)


DATA_PHRASE = {"train": "embedded training photos", "test": "embedded held-out photos",
               "test-regions": "embedded held-out regions"}


def what_ran(rows: tuple[Row, ...], scale: str = "small") -> str:
    """What a set of reconstruction rows ran at ``scale``, for a claim statement: each autoencoder with its image
    side and latent grid, and the data, e.g. "dc-ae-f8c4-tiny at 64-px (8x8 latent); embedded held-out photos"."""
    seen: dict[tuple[str, int], None] = {}
    data_names: dict[str, None] = {}
    for r in rows:
        cfg = r.run.resolve(scale)
        seen[(cfg.model, cfg.resolution)] = None
        data_names[DATA_PHRASE.get(cfg.dataset.name, cfg.dataset.name)] = None
    grid = {(m, res): res // int(re.search(r"-f(\d+)c", m).group(1)) for m, res in seen}  # registry names: f<f>c<c>
    parts = [f"{m} at {res}-px ({grid[m, res]}x{grid[m, res]} latent)" for m, res in seen]
    return "; ".join(parts) + "; " + ", ".join(data_names)


def claim_row(statement: str, metric: str, lower_is_better: bool, arm_a: tuple[Row, ...], arm_b: tuple[Row, ...],
              note: str = "", not_run: Mapping[str, str] | None = None, base_a: tuple[Row, ...] = (),
              base_b: tuple[Row, ...] = (), design: str = "independent", pairing: str = "",
              kind: str = "paper") -> Row:
    """A claim row: arm ``a`` (the rows, one per training seed, that the paper says are better on ``metric``) against
    arm ``b``, at every scale where all of their runs run, decided by the ``claim`` eval. ``not_run``: scale ->
    why the claim is not decided there although its arms run (e.g. a 1x1 latent); the reason joins the note.
    ``base_a`` / ``base_b``: a contrast, (a − base_a) − (b − base_b), seed by seed (``ClaimConfig``). ``design``
    "paired" with ``pairing`` (why seed s of the arms is one unit) declares matched seeds; ``kind`` says whether
    the row tests the paper's claim, is a diagnostic of ours, or extends the paper to another metric."""
    not_run = dict(not_run or {})
    if set(not_run) - set(SCALES):
        raise ConfigError(f"claim {statement!r}: not_run names {sorted(set(not_run) - set(SCALES))}; scales are "
                          f"{', '.join(SCALES)}")
    arms = {"arm_a": arm_a, "arm_b": arm_b, **({"base_a": base_a, "base_b": base_b} if base_a or base_b else {})}
    at: dict[str, dict[str, Any] | None] = {}
    for scale in SCALES:
        rows = [r for group in arms.values() for r in group]
        runs = scale not in not_run and all(r.run is not None and r.run.runs_at(scale) for r in rows)
        at[scale] = {k: tuple(r.run.resolve(scale) for r in v) for k, v in arms.items()} if runs else None
    first = next((s for s in SCALES if at[s] is not None), None)
    if first is None:
        raise ConfigError(f"claim {statement!r} runs at no scale (its arms' rows run nowhere, or not_run covers "
                          f"every scale where they do)")
    base = ClaimConfig(statement, metric, lower_is_better, **at[first], design=design, pairing=pairing, kind=kind)
    why = "; ".join(f"{scale}: not run: {reason}" for scale, reason in not_run.items())
    return Row(f"claim: {statement}", run=RunRef(base, at=at), note="; ".join(t for t in (note, why) if t))
