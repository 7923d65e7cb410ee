"""CUDA checks: the reconstruction protocol and one autoencoder training step on a GPU. Marked ``gpu``
(out of the default run: ``pytest -m gpu``) and skipped where no CUDA device is visible."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import models
from bench.evals import reconstruction as R
from bench.evals.inception import TinyFeatures
from models import train_autoencoder as T
from models.data import SyntheticDataset
from models.train_state import FINAL_MODEL, TRAIN_STATE

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_reconstruction_on_cuda_matches_cpu(tmp_path):
    torch.manual_seed(0)
    model = models.build("dc-ae-f32c32-tiny").eval()
    ds = SyntheticDataset(8, 64)
    kw = {"feature_net": None, "batch_size": 4, "log": lambda m: None}
    gpu = R.evaluate(model, ds, tmp_path / "gpu", device="cuda", **kw).metrics
    cpu = R.evaluate(model.cpu(), ds, tmp_path / "cpu", device="cpu", **kw).metrics
    assert gpu["_complete"] and gpu["psnr"] == pytest.approx(cpu["psnr"], abs=0.05)  # uint8 rounding differs rarely
    feats = R.evaluate(model, ds, tmp_path / "fid", device="cuda", feature_net=TinyFeatures().cuda(),
                       batch_size=4, log=lambda m: None).metrics
    assert isinstance(feats["rfid"], float)


def test_one_training_step_on_cuda_bf16(tmp_path):
    torch.manual_seed(0)
    model = models.build("dc-ae-f32c32-tiny")
    phase = dataclasses.replace(T.PHASES["phase1"], resolution=64, steps=1, batch=4, ckpt_every=1)
    data = T.TensorCropSource(torch.rand(8, 3, 96, 96) * 2 - 1)  # images in [-1, 1]
    res = T.train_autoencoder(model, phase, data, ckpt_dir=tmp_path, device="cuda", perceptual=None,
                              progress=False, log=lambda m: None)
    assert res.steps == 1 and torch.isfinite(torch.tensor(res.metrics()["l1_final"]))
    assert (tmp_path / TRAIN_STATE).exists() and (tmp_path / FINAL_MODEL).exists()
