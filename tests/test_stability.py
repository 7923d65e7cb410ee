"""bench.stability: the fresh-clone comparison counts verdict flips apart from moves to/from inconclusive, and finds
the largest relative change per metric, with timed cells kept apart."""
from bench import stability

HEAD = "artifact,panel,row,metric,label,ours,paper,delta,ratio,lower_is_better,scale,status,run_id,protocol,note\n"


def _csv(rows):
    return HEAD + "".join(f"t,,{row},{metric},,{ours},,,,,small,{status},{run},,\n"
                   for row, metric, ours, status, run in (r if len(r) == 5 else (*r, "run-1") for r in rows))


def test_flips_moves_and_largest_change():
    old = {"t-small.csv": _csv([("a", "rfid", "100", "measured"), ("b", "rfid", "50", "measured"),
                                ("a", "latency_ms", "10", "measured"), ("c", "rfid", "7", "unavailable (x)"),
                                ("claim: x", "verdict", "reproduced", ""), ("claim: y", "verdict", "reproduced", ""),
                                ("claim: z", "verdict", "inconclusive", ""), ("claim: w", "verdict", "contradicted", "")])}
    new = {"t-small.csv": _csv([("a", "rfid", "101", "measured"), ("b", "rfid", "55", "measured"),
                                ("a", "latency_ms", "30", "measured"), ("c", "rfid", "9", "unavailable (x)"),
                                ("claim: x", "verdict", "contradicted", ""), ("claim: y", "verdict", "inconclusive", ""),
                                ("claim: z", "verdict", "reproduced", ""), ("claim: w", "verdict", "contradicted", "")])}
    r = stability.compare(old, new)
    assert r["moves"]["flips"] == ["t: claim: x (reproduced -> contradicted)"]
    assert len(r["moves"]["to_inconclusive"]) == 1 and len(r["moves"]["from_inconclusive"]) == 1
    assert r["moves"]["unchanged"] == 1
    worst = r["largest"]["rfid"]
    assert (worst.row, round(worst.relative, 6)) == ("b", 0.1)  # 50 -> 55 beats 100 -> 101; unavailable ignored
    md = stability.markdown(r, "# h")
    assert "**1 flipped between reproduced and contradicted**" in md
    assert md.index("| rfid |") < md.index("| latency_ms (timed")  # results before timed cells


def test_no_change_is_no_flip():
    same = {"t-small.csv": _csv([("a", "psnr", "20", "measured"), ("claim: x", "verdict", "reproduced", "")])}
    r = stability.compare(same, same)
    assert r["moves"]["flips"] == [] and r["moves"]["unchanged"] == 1 and r["largest"]["psnr"].relative == 0
    assert r["one_sided"] == 0


def test_a_cell_of_another_run_is_not_compared():
    """A cell computed by a run of another config (a design change, not a rerun) is counted apart, not compared."""
    old = {"t-small.csv": _csv([("a", "rfid", "100", "measured", "run-1"), ("b", "psnr", "20", "measured")])}
    new = {"t-small.csv": _csv([("a", "rfid", "300", "measured", "run-2"), ("b", "psnr", "20", "measured")])}
    r = stability.compare(old, new)
    assert r["other_run"] == 1 and "rfid" not in r["largest"] and r["largest"]["psnr"].relative == 0


def test_runs_are_compared_by_id_while_the_rerun_is_going(tmp_path):
    """compare_runs: finished runs with a committed namesake are compared metric by metric (underscore keys are
    provenance, not results); a run still going (no metrics.json) or without a namesake is skipped."""
    import json
    old, new = tmp_path / "old", tmp_path / "new"
    for root, rfid, verdict in ((old, 100.0, "reproduced"), (new, 110.0, "inconclusive")):
        (root / "m__recon__small__1").mkdir(parents=True)
        (root / "m__recon__small__1" / "metrics.json").write_text(json.dumps({"rfid": rfid, "_seconds": 5.0}))
        (root / "c__claim__small__2").mkdir()
        (root / "c__claim__small__2" / "metrics.json").write_text(json.dumps({"verdict": verdict, "diff": -1.0}))
    (new / "still-going__train-ae__small__3").mkdir()
    r = stability.compare_runs(old, new)
    assert r["compared_runs"] == 2 and "recon._seconds" not in r["largest"]
    assert round(r["largest"]["recon.rfid"].relative, 9) == 0.1
    assert r["moves"]["to_inconclusive"] and not r["moves"]["flips"]


def test_the_comparison_says_which_machines_produced_each_side(tmp_path):
    """The CPU model of every compared run, from its env.json, per side: a rerun on another machine says so."""
    import json
    old, new = tmp_path / "old", tmp_path / "new"
    for root, cpu in ((old, "Intel(R) Xeon(R) Processor"), (new, "AMD EPYC")):
        for k in (1, 2):
            d = root / f"m__recon__small__{k}"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps({"rfid": 100.0}))
            if k == 1:
                (d / "env.json").write_text(json.dumps({"cpu_model": cpu}))
    r = stability.compare_runs(old, new)
    assert r["machines"] == {"committed": {"Intel(R) Xeon(R) Processor": 1, "not recorded": 1},
                             "rerun": {"AMD EPYC": 1, "not recorded": 1}}
    text = stability.markdown(r, "header")
    assert ("committed runs: Intel(R) Xeon(R) Processor (1 runs), not recorded (1 runs); "
            "rerun: AMD EPYC (1 runs)") in text


def test_the_summary_keeps_results_apart_from_timings_and_writes_no_infinity(tmp_path):
    """stability.summary (tables/stability-small.json, the README's line): timed cells are left out, a change from 0
    is None (JSON has no infinity), the largest change first."""
    import json
    old, new = tmp_path / "old", tmp_path / "new"
    for root, vals in ((old, {"psnr": 20.0, "rfid": 100.0, "images_per_s": 1.0, "plateau_reached": 0}),
                       (new, {"psnr": 22.0, "rfid": 150.0, "images_per_s": 9.0, "plateau_reached": 1})):
        (root / "m__recon__small__1").mkdir(parents=True)
        (root / "m__recon__small__1" / "metrics.json").write_text(json.dumps(vals))
    s = stability.summary(stability.compare_runs(old, new), clone_sha="abc", cpu="X", note="n", committed_small=1)
    assert [c["metric"] for c in s["largest"]] == ["recon.plateau_reached", "recon.rfid", "recon.psnr"]
    assert s["largest"][0]["relative"] is None and round(s["largest"][1]["relative"], 9) == 0.5
    json.loads(json.dumps(s, allow_nan=False))
