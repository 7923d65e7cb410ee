"""Training to a plateau: the doubling rule, the recorded curve, collapse, resumption, and config checks."""
from __future__ import annotations

import json

import pytest

from bench.configs import ConfigError, PhaseRequest, Plateau, TrainAEConfig
from bench.evals import training
from bench.runner import Runner
from bench.spec import RunRef


def _cfg(rule: Plateau) -> TrainAEConfig:
    return TrainAEConfig("dc-ae-f8c4-tiny", phases=(PhaseRequest("phase1", steps=2),), plateau=rule)


def test_the_rule_doubles_until_the_budget_and_records_the_curve(tmp_path, monkeypatch):
    psnrs = iter([10.0, 11.0, 12.0, 99.0])  # every doubling gains 1 dB: only the budget stops it
    monkeypatch.setattr(training, "probe_psnr", lambda *a, **k: next(psnrs))
    res = Runner(tmp_path).ensure(RunRef(_cfg(Plateau(min_gain_db=0.5, max_steps=8, probe_images=4))), "smoke")
    m = res.metrics
    assert m["_plateau_curve"] == [[2, 10.0], [4, 11.0], [8, 12.0]]
    assert m["steps"] == 8 and m["phase1_steps"] == 8
    assert m["plateau_reached"] == 0 and m["plateau_gain_db"] == pytest.approx(1.0)


def test_the_rule_stops_at_the_first_small_gain(tmp_path, monkeypatch):
    psnrs = iter([10.0, 10.1, 50.0])
    monkeypatch.setattr(training, "probe_psnr", lambda *a, **k: next(psnrs))
    monkeypatch.setattr(training, "probe_spread", lambda *a, **k: (0.9, 0.7))  # a working model
    res = Runner(tmp_path).ensure(RunRef(_cfg(Plateau(min_gain_db=0.3, max_steps=64, probe_images=4))), "smoke")
    assert res.metrics["_plateau_curve"] == [[2, 10.0], [4, 10.1]]
    assert res.metrics["steps"] == 4 and res.metrics["plateau_reached"] == 1
    assert res.metrics["collapsed"] == 0 and res.metrics["output_spread"] == 0.9


def test_a_collapsed_model_never_reaches_a_plateau(tmp_path, monkeypatch):
    """A flat PSNR curve of a model that outputs one image whatever its input is no plateau."""
    psnrs = iter([11.0, 11.1, 50.0])
    monkeypatch.setattr(training, "probe_psnr", lambda *a, **k: next(psnrs))
    monkeypatch.setattr(training, "probe_spread", lambda *a, **k: (0.05, 0.01))
    res = Runner(tmp_path).ensure(RunRef(_cfg(Plateau(min_gain_db=0.3, max_steps=64, probe_images=4))), "smoke")
    assert res.metrics["_plateau_curve"] == [[2, 11.0], [4, 11.1]]
    assert res.metrics["plateau_reached"] == 0 and res.metrics["collapsed"] == 1


def test_a_killed_plateau_run_resumes_at_its_stage(tmp_path, monkeypatch):
    """Stage results (probe PSNR included) are kept: a rerun reuses finished stages and does not re-probe them."""
    cfg = _cfg(Plateau(min_gain_db=0.5, max_steps=8, probe_images=4))
    calls = []

    def probe(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while probing the second stage
        return float(len(calls))
    monkeypatch.setattr(training, "probe_psnr", probe)
    with pytest.raises(KeyboardInterrupt):
        Runner(tmp_path).ensure(RunRef(cfg), "smoke")
    calls.clear()
    monkeypatch.setattr(training, "probe_psnr", lambda *a, **k: 10.0 + 5 * len(calls.append(1) or calls))
    res = Runner(tmp_path).ensure(RunRef(cfg), "smoke")
    stages = [p[0] for p in res.metrics["_plateau_curve"]]
    assert stages == [2, 4, 8] and len(calls) == 2  # stage 2 was reused, stages 4 and 8 probed now
    assert json.loads((res.dir / "ckpt" / "0-phase1" / "result-2.json").read_text())["_probe_psnr"] == 1.0


def test_the_probe_is_the_psnr_of_held_out_reconstructions():
    import torch

    import models

    class Identity(torch.nn.Module):
        def encode(self, x):
            return x

        def decode(self, z):
            return z
    assert training.probe_psnr(Identity(), 32, 4, "cpu") == pytest.approx(100.0)  # exact: capped MSE 1e-10
    torch.manual_seed(0)
    untrained = training.probe_psnr(models.build("dc-ae-f8c4-tiny"), 32, 4, "cpu")
    assert 0 < untrained < 30


def test_plateau_configs_are_checked_and_named_in_the_run_id():
    with pytest.raises(ConfigError, match="one-phase run"):
        TrainAEConfig("dc-ae-f8c4-tiny", phases=(PhaseRequest("phase1"), PhaseRequest("phase2")), plateau=Plateau())
    with pytest.raises(ConfigError, match="min_gain_db > 0"):
        Plateau(min_gain_db=0)
    r = Runner("unused")
    plain = TrainAEConfig("dc-ae-f8c4-tiny")
    assert r.run_id_of(plain, "small")[1]["plateau"] is None  # stored (and hashed) like every field
    assert r.run_id_of(plain, "small")[0] != r.run_id_of(_cfg(Plateau()), "small")[0]


def test_the_training_source_is_the_embedded_photos_a_folder_or_a_one_line_error(tmp_path):
    from types import SimpleNamespace

    from bench.configs import DataOption
    from bench.errors import UsageError
    from bench.scales import SCALES
    cfg = TrainAEConfig("dc-ae-f32c32-tiny")
    small = SimpleNamespace(scale=SCALES["small"], options={})
    paper = SimpleNamespace(scale=SCALES["paper"], options={})
    assert len(training._train_source(cfg, small, 32).dataset) > 0  # the embedded photos
    with pytest.raises(UsageError, match="needs --data FOLDER"):
        training._train_source(cfg, paper, 32)
    with pytest.raises(UsageError, match=str(tmp_path)):  # an empty folder: one line naming it
        training._train_source(cfg, SimpleNamespace(scale=SCALES["paper"],
                                                    options={"data": DataOption.parse([str(tmp_path)])}), 32)
