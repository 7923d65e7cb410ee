"""Every implemented artefact smoke-runs end to end through the CLI (STYLE rule 11: cheapest test first).

Runs write to the repository's runs/ and tables/ (smoke outputs are gitignored), exactly as `bench all --scale
smoke` in scripts/test.sh does next, which then reuses these completed runs instead of computing them twice.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import artifacts
from bench.cli_tools import is_own_model_run, referenced_runs
from bench.runner import Runner

ROOT = Path(__file__).resolve().parent.parent


def _implemented():
    out = []
    for name in artifacts.names():
        for key, spec in artifacts.load(name).SPECS.items():
            if not spec.not_implemented:
                out.append((name, key))
    return out


@pytest.mark.parametrize("name,key", _implemented())
def test_artifact_smoke_runs(name, key):
    args = [sys.executable, "-m", "bench", name, "--scale", "smoke"] + (["--ablation", key] if key else [])
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    stem = f"{name}{'-' + key if key else ''}-smoke"
    csv = (ROOT / "tables" / f"{stem}.csv").read_text().splitlines()
    assert len(csv) > 1, f"{stem}.csv has no rows"
    header = csv[0].split(",")
    assert {"ours", "paper", "scale", "run_id", "status"} <= set(header)
    scale_col = header.index("scale")
    assert all(line.split(",")[scale_col] == "smoke" for line in csv[1:] if line.count(",") == len(header) - 1)


def test_every_paper_scale_model_is_registered():
    """The ablation architectures are registered at full size, so a paper-scale row never fails for an unknown name
    (it says which weights or training it needs instead: `python -m bench needs`)."""
    from bench import artifacts
    from bench.configs import dependencies
    from models import zoo
    missing = set()
    for name in artifacts.names():
        for spec in artifacts.load(name).SPECS.values():
            for row in spec.rows:
                if row.run is None or not row.run.runs_at("paper"):
                    continue
                todo = [row.run.resolve("paper")]
                while todo:
                    cfg = todo.pop()
                    todo += dependencies(cfg)
                    model = getattr(cfg, "model", None)
                    if isinstance(model, str) and model not in zoo.REGISTRY:
                        missing.add(model)
    assert not missing


def test_a_claim_whose_arms_train_unequally_is_rejected():
    """'GAN lowers rFID' cannot be told from 'more steps lower rFID' when the baseline trains less."""
    from bench.configs import PhaseRequest, ReconConfig, TrainAEConfig
    from bench.spec import Column, Row, RunRef, Spec, claim_row
    p1 = TrainAEConfig("dc-ae-f8c4-tiny")
    longer = TrainAEConfig("dc-ae-f8c4-tiny", phases=(PhaseRequest("phase3"),), init_from=p1)
    same = TrainAEConfig("dc-ae-f8c4-tiny", phases=(PhaseRequest("phase3", gan=False),), init_from=p1)

    def spec(b_train):
        a = Row("a", run=RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, checkpoint=longer)))
        b = Row("b", run=RunRef(ReconConfig("dc-ae-f8c4-tiny", 32, checkpoint=b_train)))
        return Spec(id="t", title="t", caption="", columns=(Column("rfid", "rFID"),),
                    scales={s: "" for s in ("smoke", "small", "paper")},
                    rows=(a, b, claim_row("a beats b", "rfid", True, (a,), (b,))))
    problems = spec(p1).validate()
    assert len(problems) == 3 and all("different numbers of steps" in p for p in problems)  # every scale
    assert spec(same).validate() == []


def test_a_claim_can_be_left_undecided_at_one_scale_with_its_reason():
    """#11: no claim about f64 on a 1x1 latent. ``claim_row(not_run=...)`` leaves the claim out at that scale (its
    arms still run) and says why in the note; Figure 3a's f64 claims are not run at the small scale."""
    from bench.artifacts import figure3
    from bench.configs import ReconConfig
    from bench.spec import Row, RunRef, claim_row
    a = Row("a", run=RunRef(ReconConfig("dc-ae-f8c4-tiny", 32)))
    b = Row("b", run=RunRef(ReconConfig("dc-ae-f8c4-tiny", 64)))
    row = claim_row("a beats b", "rfid", True, (a,), (b,), note="n", not_run={"small": "too small a latent"})
    assert not row.run.runs_at("small") and row.run.runs_at("smoke") and row.run.runs_at("paper")
    assert row.note == "n; small: not run: too small a latent"
    f64 = [r for r in figure3.CLAIMS_A if "f64" in r.label and "stays nearer" not in r.label]
    assert len(f64) == 4 and all(not r.run.runs_at("small") and r.run.runs_at("smoke") for r in f64)
    assert all(r.run.runs_at("small") for r in figure3.CLAIMS_A if "f64" not in r.label)


def test_every_committed_small_run_is_named_by_an_artifact():
    """The committed small-scale run folders are exactly runs some artefact still names (at this scale or through a
    dependency), besides the runs of the own-model commands (eval-ae, protocol): a config change that silently renamed runs (e.g. a new field in a config's id) leaves orphans here.
    `python -m bench prune --delete` removes superseded ones."""
    runs = Path(__file__).resolve().parents[1] / "runs"
    tracked = subprocess.run(["git", "ls-files", "--", "runs"], cwd=runs.parent, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: the committed runs are unknown")
    committed = {Path(p).parts[1] for p in tracked.stdout.split() if "__small__" in p}
    orphans = sorted(n for n in committed - referenced_runs(Runner(runs)) if not is_own_model_run(runs / n))
    assert not orphans, f"{len(orphans)} committed run folder(s) no artefact names, e.g. {orphans[:3]}"


def test_seeds_option_sets_the_claim_arms():
    """--seeds N (DCAE_BENCH_SEEDS for the spec modules, read when they are built): every small-scale claim arm of
    Table 2 then has N seeds; a bad value is a one-line error."""
    code = ("from bench.artifacts import table2; from bench.configs import ClaimConfig; "
            "print(sorted({len(r.run.resolve('small').arm_a) for r in table2.SPECS[''].rows "
            "if r.run is not None and r.run.eval == 'claim' and r.run.runs_at('small')}))")
    for n in ("2", "5"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "DCAE_BENCH_SEEDS": n}, cwd=Path(__file__).resolve().parents[1])
        assert out.stdout.strip() == f"[{n}]", out.stderr[-500:]
    bad = subprocess.run([sys.executable, "-m", "bench", "table2", "--seeds", "0"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert bad.returncode == 2 and "--seeds '0'" in bad.stderr and bad.stderr.count("\n") <= 1


def test_figure3a_contrast_claims_pair_each_arm_with_its_f8_base():
    """'With shortcuts rFID stays near f8': a contrast claim whose bases are the f8 runs of the same
    shortcut setting, seed by seed; a base of the wrong length is a one-line ConfigError."""
    import dataclasses

    from bench.artifacts import figure3
    from bench.configs import ConfigError
    near = [r for r in figure3.CLAIMS_A if "stays nearer f8" in r.label]
    assert len(near) == 6 and sum(r.run.runs_at("small") for r in near) == 4  # f16, f32 x rFID, PSNR; f64 not
    cfg = near[0].run.resolve("small")
    assert len(cfg.base_a) == len(cfg.arm_a) == 3 and all("f8c4" in c.model for c in cfg.base_a + cfg.base_b)
    assert cfg.base_a[0].checkpoint.residual_autoencoding is None  # with shortcuts
    assert cfg.base_b[0].checkpoint.residual_autoencoding is False
    with pytest.raises(ConfigError, match="base_a pairs seed s"):
        dataclasses.replace(cfg, base_a=cfg.base_a[:2])
