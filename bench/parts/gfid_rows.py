"""gFID rows of the efficiency tables (Tables 3 and 4): a sampling run pair per paper row, beside the paper's gFID.

Each paper row of an efficiency table keeps its efficiency run (``bench.parts.efficiency_rows``); its generation numbers come from a
second row, ``"<label> · gFID"``, derived from two ``generate`` runs (without and with CFG; unconditional models: one).
The runs are built by ``bench.catalogue.sample_run``, so the same model at the same scale is one run across tables:

- ``paper``: the released checkpoint of the row when there is one (``--weights W --data D``, generation.md §4);
  otherwise the row's own paper-scale training run (``bench needs`` lists it); rows that cannot run say why;
- ``small``: the Table 1 small-scale runs of the same backbone family and autoencoder where they exist (16 tokens
  at 128 px, so the patch can differ from the paper's row: the scale text says which), else not run;
- ``smoke``: tiny backbones on tiny autoencoders, a pipeline check.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench import catalogue
from bench.spec import Column, PaperRef, Row

GFID_COLUMNS = (
    Column("fid_no_cfg", "gFID w/o CFG", True, ".3g"),
    Column("fid_cfg", "gFID w/ CFG", True, ".3g"),
    Column("gfid", "gFID of this sampling run", True, ".3g"),
    Column("kid", "KID", True, ".3g"),
    Column("kid_vs_recon", "KID vs AE reconstructions", True, ".3g"),
)


@dataclass(frozen=True)
class GfidRow:
    """The generation half of one efficiency-table row."""

    label: str                      # the efficiency row's label
    paper: PaperRef                 # the same paper row (its gFID columns)
    entry: catalogue.Entry | None      # what trains / samples at each scale; None: not run at any scale
    released: str | None = None     # released checkpoint of the row (paper scale), generation.md §4
    note: str = ""                  # why a scale does not run, or what stands in
    metrics: tuple[str, str] = ("fid_no_cfg", "fid_cfg")  # the paper's column names (w/o CFG, w/ CFG)

    @property
    def guided(self) -> tuple[bool, ...]:
        return (False, True) if self.entry is not None and self.entry.conditional else (False,)


def sample_label(g: GfidRow, guided: bool, seed: int = 0) -> str:
    tag = f"CFG {catalogue.CFG_SCALE[g.entry.family]}" if guided else "no CFG"
    return f"{g.label} · sample {tag}" + (f" · seed {seed}" if seed else "")


def _derived(g: GfidRow) -> Row:
    plain = sample_label(g, False)
    cfg = sample_label(g, True) if len(g.guided) == 2 else None
    guided = len(g.guided) == 2

    def derive(m):
        out = {g.metrics[0]: m[plain]["gfid"], "_from": [plain] + ([cfg] if guided else [])}
        return {**out, g.metrics[1]: m[cfg]["gfid"]} if guided else out

    return Row(f"{g.label} · gFID", paper=g.paper, derive=derive, note=g.note)


def gfid_rows(rows: tuple[GfidRow, ...]) -> tuple[Row, ...]:
    """The derived gFID rows first, then their sampling runs; a row with no entry shows the paper's gFID only."""
    out, runs = [], []
    for g in rows:
        if g.entry is None:
            out.append(Row(f"{g.label} · gFID", paper=g.paper, note=g.note))
            continue
        out.append(_derived(g))
        runs += [Row(sample_label(g, s), run=catalogue.sample_run(g.entry, s, released=g.released)) for s in g.guided]
    return tuple(out + runs)
