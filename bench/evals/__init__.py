"""Eval protocols by name: ``EVALS[name] = (import path of run(cfg, ctx), protocol version)``.

Imports are lazy (a string, not a module) so that ``python -m bench ls`` and ``check`` never import torch.
Bump a protocol's version when its numbers would change: the version is part of every run id, so old runs are
not reused for the new protocol. Read top to bottom: these are all the ways the harness computes a number.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

EVALS: dict[str, tuple[str, int]] = {
    # Reconstruction protocol dcae-recon-v2: rFID / PSNR / SSIM / LPIPS of an autoencoder (Table 2, Fig. 2a, 3, 7).
    # v2: SSIM averages the reflect-padded map as the official evaluator's torchmetrics does (v1 cropped the border).
    "recon": ("bench.evals.reconstruction:run", 2),
    # Autoencoder training: Decoupled High-Resolution Adaptation phases (Fig. 3, Fig. 5; issue #5).
    # v2: small-scale phase-1 lr 1e-3 -> 2e-4 (a sweep on f32c32-tiny: 1e-3 was too high for both families).
    "train-ae": ("bench.evals.training:run", 2),
    # Section 3.2 memory claim: peak training memory of full training vs phase-2 adaptation.
    "ae-memory": ("bench.evals.training:run_memory", 1),
    # Backbone efficiency profiling: throughput, latency, memory, FLOPs (Tables 3-5, Fig. 2c).
    "efficiency": ("bench.evals.efficiency:run", 1),
}


def load(name: str) -> Callable[[dict, Any], dict]:
    """The eval function registered as ``name``."""
    try:
        target, _version = EVALS[name]
    except KeyError:
        raise KeyError(f"unknown eval {name!r}; known: {sorted(EVALS)}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def version(name: str) -> int:
    return EVALS[name][1]


# Evals whose numbers do not depend on wall-clock time, so several may run at once (``all --jobs N``); the others
# (``efficiency``, ``ae-memory``) time or measure the machine and always run alone.
PARALLEL_SAFE = frozenset({"recon", "train-ae"})


def dependencies(name: str, cfg: dict) -> list[tuple[str, dict]]:
    """The runs (eval, config) a run of ``name`` with ``cfg`` needs first (via ``ctx.ensure``).

    Their run ids are hashed into the dependent run's id (so a retrained checkpoint is never evaluated under an
    old result), and ``all --jobs N`` computes them in an earlier stage.
    """
    if name == "recon" and cfg.get("checkpoint"):
        dep = cfg["checkpoint"]
        return [(dep["eval"], dict(dep.get("config") or {}))]
    if name == "train-ae" and cfg.get("from"):
        return [("train-ae", dict(cfg["from"]))]
    return []
