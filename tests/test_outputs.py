"""The typed hand-overs between evals (bench/outputs.py): they round-trip, and every committed run reads back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.outputs import ProfiledBackbone, ScoredImages, TrainedAutoencoder, TrainedDiffusion

RUNS = Path(__file__).resolve().parent.parent / "runs"


def _committed(eval_name: str) -> list[dict]:
    found = []
    for d in sorted(RUNS.glob(f"*__{eval_name}__*")):
        m = d / "metrics.json"
        if m.is_file():
            found.append(json.loads(m.read_text()))
    return found


def test_trained_diffusion_round_trips_through_metrics():
    t = TrainedDiffusion((4, 16, 16), 8, 0.5)
    assert TrainedDiffusion.of(json.loads(json.dumps(t.to_metrics()))) == t


def test_a_renamed_key_fails_in_the_reader():
    m = TrainedDiffusion((4, 16, 16), 8, 0.5).to_metrics()
    m["_n_classes"] = m.pop("_num_classes")
    with pytest.raises(KeyError):
        TrainedDiffusion.of(m)


def test_the_trained_share_comes_from_the_last_phase():
    m = {"steps": 10, "_phases": json.dumps([{"name": "phase1"}, {"name": "phase2"}]), "phase1_trainable_params": 100,
         "phase1_frozen_params": 0, "phase2_trainable_params": 25, "phase2_frozen_params": 75, "collapsed": 1}
    t = TrainedAutoencoder.of(m)
    assert t.last_phase == "phase2" and t.collapsed
    assert t.summary() == {"train_steps": 10, "trained_share": 0.25}


@pytest.mark.parametrize("eval_name,reader", [("train-diffusion", TrainedDiffusion), ("train-ae", TrainedAutoencoder),
                                              ("recon", ScoredImages), ("generate", ScoredImages),
                                              ("efficiency", ProfiledBackbone)])
def test_every_committed_run_reads_back_typed(eval_name, reader):
    runs = [m for m in _committed(eval_name) if not any(str(v).startswith("failed") for v in m.values())]
    assert runs, f"no committed {eval_name} run"
    for m in runs:
        out = reader.of(m)
        assert out == reader.of(dict(m))  # a pure read
    if reader is ScoredImages:
        assert all(reader.of(m).n_images > 0 for m in runs)
