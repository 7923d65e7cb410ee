"""Writers for the artefact outputs: a wide Markdown view of the long CSV, with ours beside the paper's."""
from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from bench.spec import Spec


def _cell(ours: str, status: str) -> str:
    if ours != "":
        return ours
    if status.startswith(("unavailable", "failed", "not ")):
        return status if len(status) < 60 else status[:57] + "..."
    return "–"


def wide(df: pd.DataFrame, metric_order: list[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Pivot the long table: one line per row label, and per metric an 'ours' and a 'paper' column."""
    metrics = [m for m in (metric_order or []) if m in set(df["metric"])] or list(dict.fromkeys(df["metric"]))
    labels = {m: df[df["metric"] == m]["label"].iloc[0] for m in metrics}
    headers = ["row"] + [f"{labels[m]} ({side})" for m in metrics for side in ("ours", "paper")]
    lines = []
    for row in dict.fromkeys(df["row"]):
        sub = df[df["row"] == row].set_index("metric")
        line = [row]
        for m in metrics:
            if m in sub.index:
                r = sub.loc[m]
                line += [_cell(str(r["ours"]), str(r["status"])), str(r["paper"]) or "–"]
            else:
                line += ["", ""]
        lines.append(line)
    return headers, lines


def markdown_table(spec: Spec, scale: str, df: pd.DataFrame) -> str:
    head = f"### {spec.title} — `{scale}` scale\n\n{spec.caption}\n\n"
    if not len(df):
        return head + "_No rows at this scale._\n"
    headers, lines = wide(df.fillna(""), [c.metric for c in spec.columns])
    body = tabulate(lines, headers=headers, tablefmt="github", disable_numparse=True)
    note = (f"\n\nScale `{scale}`: {spec.scales.get(scale, '')}\nOurs are measured by this harness; the paper's "
            f"numbers are from arXiv 2410.10733, shown beside ours for comparison only.\n")
    return head + body + note


# --------------------------------------------------------------------------------------------------------------
# Plot frames: every figure opens and closes the same way
# --------------------------------------------------------------------------------------------------------------

def plot_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A copy of an artefact's long table with numeric columns ``v`` (ours) and ``p`` (the paper's), NaN where a
    cell is not a number, and the table's scale (for the title)."""
    d = df.copy()
    d["v"] = pd.to_numeric(d["ours"], errors="coerce")
    d["p"] = pd.to_numeric(d["paper"], errors="coerce")
    return d, (str(d["scale"].iloc[0]) if len(d) else "")


def new_figure(nrows: int, ncols: int, figsize: tuple[float, float], **subplots_kw):
    """``(fig, axes)`` on the file-only Agg backend. matplotlib is imported here, not at the top: the light
    commands (``ls``, ``check``) import every artefact module and must not pay for it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(nrows, ncols, figsize=figsize, **subplots_kw)


def save_figure(fig, out_png, title: str, title_size: float | None = 10, dpi: int = 120) -> None:
    """Title (None: matplotlib's default size), tight layout, write the PNG and free the figure."""
    import matplotlib.pyplot as plt
    fig.suptitle(title, **({} if title_size is None else {"fontsize": title_size}))
    fig.tight_layout()
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
