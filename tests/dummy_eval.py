"""A dummy eval that exercises the whole runner pipeline without any model (lm-eval's dummy-model idea)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import torch
from safetensors.torch import save_file

from bench.configs import EvalConfig
from bench.errors import RowFailed, Unavailable
from bench.evals import Eval


@dataclass(frozen=True)
class DummyConfig(EvalConfig):
    EVAL: ClassVar[str] = "dummy"
    x: float                     # the number every metric is made from
    crash: bool = False          # raise an unexpected error
    unavailable: bool = False    # raise Unavailable
    row_failed: bool = False     # raise RowFailed (a checkpoint that does not match its model)
    outputs: bool = False        # write and declare a checkpoint, like train-ae
    parent: DummyConfig | None = None  # a run this one depends on


def registration(version: int = 1) -> Eval:
    return Eval(DummyConfig, "tests.dummy_eval:run", "dummy", version, parallel_safe=True)


def run(cfg: DummyConfig, ctx):
    ctx.log(f"dummy eval with {cfg}")
    if cfg.parent is not None:
        ctx.input(cfg.parent)
    if cfg.crash:
        raise RuntimeError("planted crash")
    if cfg.unavailable:
        raise Unavailable("no such weights here")
    if cfg.row_failed:
        raise RowFailed("checkpoint does not match the model")
    if cfg.outputs:  # a checkpoint other runs need, declared like train-ae's
        (ctx.run_dir / "ckpt").mkdir(exist_ok=True)
        save_file({"w": torch.zeros(4)}, str(ctx.run_dir / "ckpt" / "model.safetensors"))
    counter = ctx.run_dir / "calls.txt"
    counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
    return {"infer_throughput_img_s": cfg.x * 100.0, "only_ours": 8.0 / cfg.x, "score": cfg.x * 2.0, "label": "ok",
            "_pid": os.getpid(), "_calls": int(counter.read_text()),  # a recomputation is a new result
            **({"_outputs": ["ckpt/model.safetensors"]} if cfg.outputs else {})}
