"""The claim eval (bench/evals/claims.py): the arms' values and image jackknives, the one rule of bench/stats.py,
collapsed arms, and the recomputation of runs that lack the file a claim needs."""
from __future__ import annotations

import dataclasses
import json

import pytest

from bench.configs import (
    EMBEDDED_TEST,
    EMBEDDED_TEST_REGIONS,
    SYNTHETIC,
    ClaimConfig,
    ReconConfig,
)
from bench.errors import Unavailable
from bench.evals import JACKKNIFE_FILE
from bench.runner import Runner
from bench.spec import RunRef

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


DECISIONS = ("reproduced", "contradicted", "inconclusive", "invalid")


def _recon(model: str) -> ReconConfig:
    return ReconConfig(model, 32, dataset=SYNTHETIC, n_images=6, features="tiny", batch_size=6)


def _claim(metric: str, n_seeds: int, **kw) -> ClaimConfig:
    a, b = _recon("dc-ae-f8c4-tiny"), _recon("dc-ae-f32c32-tiny")
    return ClaimConfig(f"f8 beats f32 on {metric}", metric, metric in ("rfid", "lpips"), (a,) * n_seeds,
                       (b,) * n_seeds, **kw)


@pytest.mark.parametrize("metric", ["psnr", "rfid"])
def test_claim_is_decided_from_the_arm_runs(tmp_path, metric):
    runner = Runner(tmp_path)
    res = runner.ensure(RunRef(_claim(metric, 3)), "smoke")
    m = res.metrics
    a = runner.ensure(RunRef(_recon("dc-ae-f8c4-tiny")), "smoke").metrics
    b = runner.ensure(RunRef(_recon("dc-ae-f32c32-tiny")), "smoke").metrics
    assert m["verdict"].split(":")[0] in DECISIONS and m["n_seeds"] == 3 and m["n_images"] == 6
    assert m["mean_a"] == pytest.approx(a[metric], rel=1e-6) and m["mean_b"] == pytest.approx(b[metric], rel=1e-6)
    assert m["ci_lo"] <= m["diff"] <= m["ci_hi"] and m["_protocol"] == "dcae-claim-v5"
    assert len(m["_from"]) == 6 and m["_how_verdict"] and m["image_groups"] == "6 index blocks"
    assert m["pairing"] == "independent" and 0 <= m["p_value"] <= 1


def _set_collapsed(runner, model: str, value: int) -> None:
    arm = runner.ensure(RunRef(_recon(model)), "smoke")
    metrics = json.loads((arm.dir / "metrics.json").read_text())
    (arm.dir / "metrics.json").write_text(json.dumps({**metrics, "collapsed": value}))


def test_a_claim_with_a_collapsed_arm_is_invalid(tmp_path):
    """Smoke-scale models (2 training steps) are collapsed by the rule; the flags are set by hand to test the claim."""
    runner = Runner(tmp_path)
    _set_collapsed(runner, "dc-ae-f8c4-tiny", 0)
    _set_collapsed(runner, "dc-ae-f32c32-tiny", 1)
    m = Runner(tmp_path).ensure(RunRef(_claim("psnr", 3)), "smoke").metrics
    assert m["verdict"] == "invalid: dc-ae-f32c32-tiny (arm b) collapsed"
    assert "by the interval alone" in m["_how_verdict"]
    _set_collapsed(runner, "dc-ae-f32c32-tiny", 0)
    m = Runner(tmp_path).ensure(RunRef(_claim("psnr", 3)), "smoke", force=True).metrics
    assert m["verdict"] in DECISIONS


def test_fewer_seeds_are_inconclusive_by_rule(tmp_path):
    runner = Runner(tmp_path)
    for model in ("dc-ae-f8c4-tiny", "dc-ae-f32c32-tiny"):
        _set_collapsed(runner, model, 0)  # smoke-scale models count as collapsed; the seed rule is tested here
    m = Runner(tmp_path).ensure(RunRef(_claim("psnr", 1)), "smoke").metrics
    assert m["verdict"] == "inconclusive" and m["_how_verdict"].startswith("1 seeds < 3")


def test_runs_without_a_jackknife_file_are_recomputed(tmp_path):
    runner = Runner(tmp_path)
    arm = runner.ensure(RunRef(_recon("dc-ae-f8c4-tiny")), "smoke")
    (arm.dir / JACKKNIFE_FILE).unlink()
    m = runner.ensure(RunRef(_claim("rfid", 1)), "smoke").metrics
    assert (arm.dir / JACKKNIFE_FILE).exists() and m["n_images"] == 6


def test_arms_on_different_images_are_not_decided(tmp_path):
    cfg = _claim("psnr", 1)
    other = (ReconConfig("dc-ae-f32c32-tiny", 32, dataset=SYNTHETIC, n_images=6, features="tiny", seed=1),)
    with pytest.raises(Unavailable, match="different images"):
        Runner(tmp_path).ensure(RunRef(ClaimConfig(cfg.statement, "psnr", False, cfg.arm_a, other)), "smoke")


def _write_claims(path, claims, artifact="figure3", panel="residual"):
    import csv

    from bench.runner import CSV_COLUMNS
    rows = []
    for claim, verdict, extra in claims:
        cells = {"verdict": verdict, "diff": "-1.5", "ci_lo": "-2", "ci_hi": "-1", "n_seeds": "3",
                 "image_groups": "8 photos", "p_value": "0.01", **extra}
        for metric, ours in cells.items():
            rows.append({"artifact": artifact, "panel": panel, "row": f"claim: {claim}", "metric": metric,
                         "ours": ours, "status": "measured", "scale": "small", "note": ""})
    rows.append({"artifact": artifact, "panel": panel, "row": "claim: E beats F", "metric": "verdict",
                 "ours": "", "status": "unavailable (not decidable by the paired rule)", "scale": "small", "note": ""})
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)


def test_report_lists_every_claim_with_its_verdict(tmp_path):
    """The claims table of REPORT.md and the README: every claim row, whatever its verdict, and undecided ones too."""
    from bench import report
    _write_claims(tmp_path / "figure3-residual-small.csv", [("A beats B", "contradicted", {}),
                                                             ("C beats D", "reproduced", {})])
    found = {r["claim"]: r for r in report.claims(tmp_path, "small")}
    assert found["A beats B"]["verdict"] == "**contradicted**" and found["C beats D"]["verdict"] == "**reproduced**"
    assert found["A beats B"]["a - b [90% CI]"] == "-1.5 [-2, -1]" and found["A beats B"]["seeds"] == "3"
    assert found["E beats F"]["verdict"] == "**not decided**" and "paired rule" in found["E beats F"]["why / rule"]
    text = report.claims_markdown(tmp_path, "small")
    assert text.startswith("3 distinct tests of the paper's claims at `small` scale: 1 contradicted, 1 not decided, "
                           "1 reproduced. Of the 2 reproduced or contradicted, 2 survive Holm")


def test_the_readme_table_shows_each_paper_test_once_in_short_rows(tmp_path):
    from bench import report
    _write_claims(tmp_path / "table2-small.csv", [
        ("a-tiny (2x2 latent) beats b-tiny (4x4 latent), 128-px photos; for the paper's A vs B", "reproduced",
         {"test_id": "t1"}),
        ("c beats d (KID vs recon)", "contradicted", {"test_id": "t2", "kind": "diagnostic", "p_value": "0.5"})],
        artifact="table2", panel="")
    text = report.claims_compact(tmp_path, "small", link_prefix="tables/")
    assert "| a-tiny beats b-tiny, 128-px photos | **reproduced** |" in text
    assert "c beats d" not in text and "[table2](tables/table2-small.md)" in text
    assert text.startswith("2 distinct tests of the paper's claims")  # with the helper's undecided row


def test_the_tally_counts_a_test_once_and_leaves_diagnostics_out(tmp_path):
    from bench import report
    _write_claims(tmp_path / "table2-small.csv", [("A beats B", "reproduced", {"test_id": "t1"}),
                                                  ("G beats H", "invalid: x (arm b) collapsed", {"test_id": "t3"})],
                  artifact="table2", panel="")
    _write_claims(tmp_path / "figure2-a-small.csv", [("A beats B again", "reproduced", {"test_id": "t1"}),
                                                     ("C beats D (KID vs recon)", "reproduced",
                                                      {"test_id": "t2", "kind": "diagnostic", "p_value": "0.5"})],
                  artifact="figure2", panel="a")
    rows = report.claims(tmp_path, "small")
    tests = report.distinct_tests(rows)
    assert len(rows) == 6 and len(tests) == 5  # t1 twice; two undecided rows without a test id
    assert [t["artefact"] for t in tests if t["test"] == "t1"] == ["table2, figure2-a"]
    line = report.tally(rows, "small")
    assert line.startswith("4 distinct tests of the paper's claims at `small` scale: 1 invalid, 2 not decided, "
                           "1 reproduced")
    assert "1 rows repeat a test" in line and "1 rows are our diagnostics" in line
    text = report.claims_markdown(tmp_path, "small")
    assert "Not counted (our diagnostics and extensions)" in text and "KID vs recon" in text.split("Not counted")[1]


def test_the_same_regions_at_two_resolutions_are_paired_each_against_its_own_originals(tmp_path):
    """Figure 3b: "worse at 4x" pairs every region with itself; rFID of each arm against its resolution's originals."""
    def at(res: int) -> ReconConfig:
        return ReconConfig("dc-ae-f8c4-tiny", res, dataset=EMBEDDED_TEST_REGIONS, n_images=6, features="tiny",
                           batch_size=6)
    runner = Runner(tmp_path)
    claim = ClaimConfig("lower rFID at 32 px than at 64 px", "rfid", True, (at(32),) * 3, (at(64),) * 3,
                        design="paired", pairing="the same model at two resolutions")
    m = runner.ensure(RunRef(claim), "smoke").metrics
    a, b = (runner.ensure(RunRef(at(r)), "smoke").metrics for r in (32, 64))
    assert m["mean_a"] == pytest.approx(a["rfid"], rel=1e-6) and m["mean_b"] == pytest.approx(b["rfid"], rel=1e-6)
    assert m["n_images"] == 6 and m["ci_lo"] <= m["diff"] <= m["ci_hi"] and m["image_groups"].endswith("photos")
    crops = tuple(ReconConfig("dc-ae-f8c4-tiny", r, dataset=EMBEDDED_TEST, n_images=6, features="tiny",
                              batch_size=6) for r in (32, 64))
    with pytest.raises(Unavailable, match="different images"):  # the crop split differs per resolution
        runner.ensure(RunRef(ClaimConfig("x", "psnr", False, (crops[0],) * 3, (crops[1],) * 3)), "smoke")


def test_the_report_says_which_machines_produced_the_runs(tmp_path):
    """The report groups the runs its tables name by CPU model / kernel build / cores / torch (from each
    run's env.json), counts those from a dirty tree, splits a derived row's ';'-joined sources, and names the runs
    it cannot find."""
    from bench import report
    tables, runs = tmp_path / "tables", tmp_path / "runs"
    tables.mkdir()
    head = "artifact,panel,row,metric,label,ours,paper,delta,ratio,lower_is_better,scale,status,run_id,protocol,note\n"
    (tables / "table2-small.csv").write_text(head + "table2,,r,psnr,,1,,,,,small,measured,r1,,\n"
                                                    "table2,,d,psnr,,1,,,,,small,measured,r2;r3,,\n"
                                                    "table2,,x,psnr,,1,,,,,small,measured,gone,,\n")
    for rid, cpu, dirty in (("r1", "CPU A", False), ("r2", "CPU A", True), ("r3", "CPU B", False)):
        (runs / rid).mkdir(parents=True)
        (runs / rid / "env.json").write_text(json.dumps({"cpu_model": cpu, "kernel_build": "#1", "cpu_count": 2,
                                                         "torch": "2.14.1", "git_dirty": dirty}))
    text = report.machines(tables, "small", runs)
    assert "- 2 runs on CPU A (2 cores, kernel build `#1`, torch 2.14.1); 1 of them" in text
    assert "- 1 runs on CPU B" in text and "1 runs named by the tables have no readable env.json" in text
    (runs / "r3" / "env.json").write_text("{truncated")  # damaged: counted, not a traceback
    assert "2 runs named by the tables have no readable env.json" in report.machines(tables, "small", runs)


def test_a_contrast_pairs_bases_by_their_images_not_by_when_the_run_was_made(tmp_path):
    """A base run made before ``_regions_id`` was recorded scored the same images as its arm: it is used; a base on
    other images is refused in one line."""
    runner = Runner(tmp_path)
    cfg = _claim("psnr", 3)
    base = (_recon("sd-vae-f8c4-tiny"),) * 3
    old = runner.ensure(RunRef(base[0]), "smoke")
    metrics_file = old.dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    del metrics["_regions_id"]
    metrics_file.write_text(json.dumps(metrics))
    contrast = ClaimConfig(cfg.statement, "psnr", False, cfg.arm_a, cfg.arm_b, base_a=base, base_b=base)
    m = runner.ensure(RunRef(contrast), "smoke").metrics
    assert m["verdict"].split(":")[0] in DECISIONS and m["n_images"] == 6
    elsewhere = (ReconConfig("sd-vae-f8c4-tiny", 32, dataset=SYNTHETIC, n_images=6, features="tiny", seed=1),) * 3
    with pytest.raises(Unavailable, match="evaluated on (other|different) images"):
        runner.ensure(RunRef(dataclasses.replace(contrast, base_a=elsewhere)), "smoke")
