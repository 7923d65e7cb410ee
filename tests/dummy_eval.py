"""A dummy eval that exercises the whole runner pipeline without any model (lm-eval's dummy-model idea)."""
import os

import torch
from safetensors.torch import save_file


def run(cfg, ctx):
    ctx.log(f"dummy eval with {cfg}")
    if cfg.get("crash"):
        raise RuntimeError("planted crash")
    if cfg.get("unavailable"):
        from bench.errors import Unavailable
        raise Unavailable("no such weights here")
    if cfg.get("outputs"):  # a checkpoint other runs need, declared like train-ae's
        (ctx.run_dir / "ckpt").mkdir(exist_ok=True)
        save_file({"w": torch.zeros(4)}, str(ctx.run_dir / "ckpt" / "model.safetensors"))
    counter = ctx.run_dir / "calls.txt"
    counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))
    return {"infer_throughput_img_s": cfg["x"] * 100.0, "only_ours": 8.0 / cfg["x"], "score": cfg["x"] * 2.0, "label": "ok", "_protocol": "dummy-v1", "_pid": os.getpid(),
            **({"_outputs": ["ckpt/model.safetensors"]} if cfg.get("outputs") else {})}
