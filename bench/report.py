"""The comparison report: every artefact's CSV side by side with the paper, in ``tables/REPORT.md``.

Summarising is kept apart from running: this reads ``tables/*.csv`` only and computes nothing.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench import artifacts
from bench.emit import markdown_table
from bench.provenance import atomic_write_text, read_json
from bench.scales import SCALES

STEM = re.compile(r"^(?P<artifact>[a-z]+\d*)(?:-(?P<panel>[a-z0-9]+))?-(?P<scale>smoke|small|paper)$")
SCALE_ORDER = {"paper": 0, "small": 1, "smoke": 2}


def _spec_for(artifact: str, panel: str):
    try:
        return artifacts.load(artifact).SPECS.get(panel or "")
    except (ImportError, AttributeError):
        return None


def tables(tables_dir: Path) -> list[tuple[str, str, str, Path]]:
    found = []
    for p in sorted(tables_dir.glob("*.csv")):
        m = STEM.match(p.stem)
        if m:
            found.append((m["artifact"], m["panel"] or "", m["scale"], p))
    order = {n: i for i, n in enumerate(artifacts.ORDER)}
    return sorted(found, key=lambda t: (order.get(t[0], 99), t[1], SCALE_ORDER[t[2]]))


def summary_line(df: pd.DataFrame) -> dict[str, object]:
    measured = df[df["status"] == "measured"]
    both = measured[(measured["paper"].astype(str) != "") & measured["paper"].notna()]
    return {"cells": len(df), "measured": len(measured), "with paper": len(both),
            "unavailable": int(df["status"].astype(str).str.startswith("unavailable").sum()),
            "failed": int(df["status"].astype(str).str.startswith("failed").sum())}


def _cell(c: dict, key: str, default: str = "") -> str:
    return c.get(key, (default, ""))[0] or default


def claims(tables_dir: Path, scale: str) -> list[dict[str, str]]:
    """Every claim row of every ``<artefact>-<scale>.csv``: the statement, its verdict under the one rule of
    bench/stats.py (or why there is none), a - b with its interval, seeds, images, power, the row's kind (the
    paper's claim, our diagnostic, our extension), its p-value and the test it runs (``test``: one id per set of
    arm runs and metric, so one test shown by two artefacts is one test)."""
    out = []
    for artifact, panel, s, path in tables(tables_dir):
        if s != scale:
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for row, cells in df[df["row"].str.startswith("claim: ")].groupby("row", sort=False):
            c = {m: (v, st) for m, v, st in zip(cells["metric"], cells["ours"], cells["status"])}
            verdict, status = c.get("verdict", ("", "no verdict"))
            if status.startswith("not run"):
                continue  # not a claim at this scale (its arms do not run here)
            interval = (f"{float(c['diff'][0]):.3g} [{float(c['ci_lo'][0]):.3g}, {float(c['ci_hi'][0]):.3g}]"
                        if _cell(c, "ci_lo") not in ("", "nan") else
                        (f"{float(c['diff'][0]):.3g}" if _cell(c, "diff") else "-"))
            why = re.sub(r"^measured \((.*)\)$", r"\1", status) if verdict else status
            out.append({"artefact": f"{artifact}{'-' + panel if panel else ''}", "claim": row[7:],
                        "verdict": f"**{verdict}**" if verdict else "**not decided**",
                        "a - b [90% CI]": interval, "seeds": _cell(c, "n_seeds", "-"),
                        "images": _cell(c, "image_groups", _cell(c, "n_images", "-")),
                        "power": _cell(c, "power", "-"), "paper": cells["note"].iloc[0] or "-",
                        "why / rule": why[:160], "table": f"[{path.stem}]({path.stem}.md)",
                        "kind": _cell(c, "kind", "paper"), "p": _cell(c, "p_value", "nan"),
                        "test": _cell(c, "test_id", f"{artifact}-{panel}-{row}")})
    return out


FAMILY_ALPHA = 0.10  # the family-wise level of the tally (Holm) and the false-discovery level (Benjamini-Hochberg)


def distinct_tests(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """One row per test (``test``), the first artefact's, naming every artefact that shows it."""
    seen: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["test"] in seen:
            seen[r["test"]]["artefact"] += f", {r['artefact']}"
        else:
            seen[r["test"]] = dict(r)
    return list(seen.values())


def tally(rows: list[dict[str, str]], scale: str) -> str:
    """The headline: the paper's distinct tests by verdict, how many decided verdicts survive Holm (and BH) at
    ``FAMILY_ALPHA`` over them, and what is left out of the count."""
    from bench import stats
    tests = distinct_tests(rows)
    paper = [r for r in tests if r["kind"] == "paper"]
    verdicts = [r["verdict"].strip("*") for r in paper]
    counts = pd.Series([v.split(":")[0] for v in verdicts]).value_counts().to_dict()
    decided = [i for i, v in enumerate(verdicts) if v in ("reproduced", "contradicted")]
    p = [float(r["p"]) if r["p"] not in ("", "nan") else float("nan") for r in paper]
    holm, bh = stats.holm(p, FAMILY_ALPHA), stats.benjamini_hochberg(p, FAMILY_ALPHA)
    apart = len(tests) - len(paper)
    return (f"{len(paper)} distinct tests of the paper's claims at `{scale}` scale: "
            + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            + f". Of the {len(decided)} reproduced or contradicted, {sum(holm[i] for i in decided)} survive Holm's "
              f"family-wise control at {FAMILY_ALPHA:.0%} over the {len(paper)} tests "
              f"({sum(bh[i] for i in decided)} survive Benjamini-Hochberg at {FAMILY_ALPHA:.0%}). "
            + f"{len(rows) - len(tests)} rows repeat a test shown elsewhere (counted once); {apart} rows are our "
              f"diagnostics or extensions beyond the paper's stated metric (listed apart, not counted).")


RULE = ("One rule for all (bench/stats.py): a 90 % Student t interval of a - b over training seeds (Welch, or paired "
        "where the claim's design pairs seeds) and images resampled by source photo (delete-one-photo jackknife), "
        "Satterthwaite degrees of freedom; reproduced when it excludes 0 on the paper's side, contradicted on the "
        "other, inconclusive otherwise or with fewer than 3 seeds per arm; invalid when an arm's model collapsed. "
        "Power: seeds per arm for 80 % power at the measured spread.")


def claims_markdown(tables_dir: Path, scale: str, link_prefix: str = "") -> str:
    """The tally, then the paper's distinct tests and, apart, our diagnostics and extensions; every verdict in
    the same bold, whatever it is."""
    from tabulate import tabulate
    rows = claims(tables_dir, scale)
    for r in rows:
        r["table"] = r["table"].replace("](", f"]({link_prefix}")
    tests = distinct_tests(rows)
    show = ("artefact", "claim", "verdict", "a - b [90% CI]", "seeds", "images", "power", "table")
    paper = [{k: r[k] for k in show} for r in tests if r["kind"] == "paper"]
    other = [{"kind": r["kind"], **{k: r[k] for k in show}} for r in tests if r["kind"] != "paper"]
    out = tally(rows, scale) + " " + RULE + "\n\n" + tabulate(paper, headers="keys", tablefmt="github") + "\n"
    if other:
        out += "\nNot counted (our diagnostics and extensions):\n\n" + tabulate(other, headers="keys",
                                                                                 tablefmt="github") + "\n"
    return out


def short_claim(statement: str) -> str:
    """A claim statement without its parentheses and without the paper's row after ';' (what ran, in one line)."""
    ran = statement.split("; for the paper's")[0]
    return re.sub(r" \([^()]*(\([^()]*\)[^()]*)*\)", "", ran)


def claims_compact(tables_dir: Path, scale: str, link_prefix: str = "") -> str:
    """The tally and the paper's distinct tests in rows that fit a screen (what ran, verdict, interval, table);
    the full statements, seeds, images and power are in REPORT.md and each table."""
    rows = claims(tables_dir, scale)
    tests = [r for r in distinct_tests(rows) if r["kind"] == "paper"]
    lines = ["| what ran | verdict | a - b [90% CI] | table |", "|---|---|---|---|"]
    for r in tests:
        stem = r["table"].split("](")[1].split(".md)")[0]  # e.g. table2-small
        lines.append(f"| {short_claim(r['claim'])} | {r['verdict']} | {r['a - b [90% CI]']} | "
                     f"[{stem.rsplit('-', 1)[0]}]({link_prefix}{stem}.md) |")
    return tally(rows, scale) + "\n\n" + "\n".join(lines) + "\n"


def machines(tables_dir: Path, scale: str, runs_dir: Path) -> str:
    """Which machines produced the runs behind the ``scale`` tables (the committed runs say which machine): one
    line per (CPU model, kernel build, cores, torch) from each run's ``env.json``, with how many runs came from a
    tree with uncommitted changes; the efficiency runs are counted with the rest."""
    ids = set()
    for _, _, s, path in tables(tables_dir):
        if s == scale:
            for cell in pd.read_csv(path, dtype=str, keep_default_na=False).get("run_id", pd.Series(dtype=str)):
                ids |= set(cell.split(";"))  # a derived row names its source runs, joined by ';'
    ids -= {"", "derived"}
    seen: dict[tuple, list[int]] = {}
    missing = 0
    for rid in sorted(ids):
        env = read_json(runs_dir / rid / "env.json")  # None: missing or damaged
        if not isinstance(env, dict):
            missing += 1
            continue
        key = tuple(env.get(k, "not recorded") for k in ("cpu_model", "kernel_build", "cpu_count", "torch"))
        count = seen.setdefault(key, [0, 0])
        count[0] += 1
        count[1] += bool(env.get("git_dirty"))
    lines = [f"- {n} runs on {cpu} ({cores} cores, kernel build `{kernel}`, torch {torch}); {dirty} of them from a "
             f"tree with uncommitted changes (their `env.json` says so)" for (cpu, kernel, cores, torch), (n, dirty)
             in sorted(seen.items(), key=lambda kv: -kv[1][0])]
    if missing:
        lines.append(f"- {missing} runs named by the tables have no readable env.json in {runs_dir}/ (computed "
                     f"elsewhere, or damaged)")
    return f"Produced on (the `env.json` of every run the `{scale}` tables name):\n\n" + "\n".join(lines) + "\n"


def write_report(tables_dir: Path, figures_dir: Path,
                 runs_dir: Path | None = None) -> tuple[Path, list[dict[str, object]]]:
    runs_dir = runs_dir if runs_dir is not None else tables_dir.parent / "runs"

    parts = ["# dcae-bench comparison report\n",
             "Every table below is generated by `python -m bench <artefact> --scale <scale>` and summarised by "
             "`python -m bench report`. **Ours** are measured by this harness from the run named in each CSV row "
             "(`runs/<run_id>/`); **paper** numbers are from arXiv 2410.10733 and are shown beside ours only for "
             "comparison. `smoke` numbers are pipeline checks, never results; `small` numbers come from "
             "reduced models on a 2-core CPU and reproduce trends, not absolute values.\n"]
    for scale in ("paper", "small"):
        if claims(tables_dir, scale):
            parts.append(f"\n## Every claim at `{scale}` scale\n\n" + claims_markdown(tables_dir, scale) + "\n"
                         + machines(tables_dir, scale, runs_dir))
    summary = []
    for artifact, panel, scale, path in tables(tables_dir):
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        spec = _spec_for(artifact, panel)
        name = f"{artifact}{'-' + panel if panel else ''}"
        summary.append({"artefact": name, "scale": scale, **summary_line(df)})
        if SCALES[scale].random_init:
            continue  # pipeline checks: in the printed summary, never presented as results in the report
        if spec is None:
            parts.append(f"\n## {name} ({scale})\n\n(spec not found; raw CSV `{path.name}`)\n")
            continue
        parts.append(f"\n## {name} — {scale}\n\n" + markdown_table(spec, scale, df))
        png = figures_dir / f"{path.stem}.png"
        if png.exists():
            parts.append(f"\n![{name} {scale}](../{figures_dir.name}/{png.name})\n")
        if spec.deviations:
            parts.append("\nDeviations from the paper:\n" + "".join(f"- {d}\n" for d in spec.deviations))
    out = tables_dir / "REPORT.md"
    atomic_write_text(out, "".join(parts))
    return out, summary
