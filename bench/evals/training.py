"""Eval ``train-ae``: train an autoencoder with Decoupled High-Resolution Adaptation phases (paper §3.2, Fig. 6).

Config: ``bench.configs.TrainAEConfig`` (model, phases as ``PhaseRequest``s, seed, the Residual Autoencoding switch,
and ``init_from``: another train-ae config whose final weights this run starts from). Each requested phase is the
paper's ``PhaseConfig`` (``models.train_autoencoder.PHASES``), then this scale's defaults (``SCALE_DEFAULTS``), then
the fields the request sets. So ``TrainAEConfig(m)`` names the same run for every artefact that wants "the phase-1
model of m" at a scale (Table 2, Fig. 2a, 3, 5, 7).

Outputs in the run folder: ``ckpt/<i>-<phase>/train_state.pt`` (resumable; an interrupted run continues where it
stopped), ``ckpt/model.safetensors`` (final weights, ``models.save`` format; the ``recon`` eval evaluates it and keeps sample
PNGs). Metrics: per-phase final losses and s/step, ``perceptual``
(``lpips-alex`` or ``none``: LPIPS backbone weights are not shipped; without them the loss is L1 only).

Eval ``ae-memory`` (``run_memory``): the §3.2 training-memory claim, full training vs phase-2 latent adaptation.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import models
import models.zoo
from bench.configs import SCALE_DEFAULTS, MemoryConfig, Plateau, TrainAEConfig
from bench.evals.image_groups import is_collapsed, spread_of
from bench.errors import Unavailable, UsageError
from bench.provenance import atomic_write_json, damage, quarantine
from bench.scales import SCALES
from models import data, losses
from models.train_autoencoder import PHASES, SELECTORS, DatasetCropSource, PhaseConfig, train_autoencoder
from models.train_state import FINAL_MODEL, TRAIN_STATE, mix_seed


def phase_configs(cfg: TrainAEConfig, scale: str, f: int = 8) -> list[PhaseConfig]:
    """The ``PhaseConfig`` of each requested phase at ``scale`` for a model of compression ``f``: the paper's phase,
    then this scale's defaults, then the fields the request sets."""
    out = []
    for i, req in enumerate(cfg.phases):
        asked = {k: v for k, v in dataclasses.asdict(req).items() if v is not None and k != "phase"}
        merged = {**SCALE_DEFAULTS[scale][req.phase], **asked}
        if SCALES[scale].random_init and "resolution" not in merged:  # a pipeline check at max(32, f) px
            merged["resolution"] = max(32, f) * (2 if req.phase == "phase2" else 1)
        merged.setdefault("seed", cfg.seed * 1000 + i)
        out.append(dataclasses.replace(PHASES[req.phase], **merged))
    return out


def _train_source(cfg: TrainAEConfig, ctx, resolution: int) -> DatasetCropSource:
    root = cfg.data  # a user's image folder (python -m bench train-ae --data)
    if not root and ctx.scale.full_protocol:
        option = ctx.options.get("data")
        if not option or option.root is None:
            raise UsageError("train-ae at paper scale needs --data FOLDER (an image folder of the training set)")
        root = option.root
    if not root:
        return DatasetCropSource(data.EmbeddedPhotos("train", resolution), resolution)
    try:
        return DatasetCropSource(data.ImageFolderDataset(root, resolution), resolution)
    except data.DataFolderError as e:  # not a folder of readable images: one line, no traceback
        raise UsageError(str(e)) from None


def _model_overrides(cfg: TrainAEConfig) -> dict[str, Any]:
    return {} if cfg.residual_autoencoding is None else {"residual_autoencoding": cfg.residual_autoencoding}


def _build(cfg: TrainAEConfig, ctx) -> tuple[torch.nn.Module, list[PhaseConfig], str]:
    """The model (initialised, or from the ``init_from`` run), its phases, and the parent run id ("" if none)."""
    try:
        f = models.zoo.get_config(cfg.model, **_model_overrides(cfg)).spatial_compression
    except ValueError as e:
        raise UsageError(f"train-ae: {e}") from None
    phases = phase_configs(cfg, ctx.scale.name, f)
    for p in phases:
        if p.resolution % f:
            raise UsageError(f"train-ae: {p.name} resolution {p.resolution} is not a multiple of {cfg.model}'s f={f}")
    torch.manual_seed(mix_seed(cfg.seed, "init"))
    model = models.build(cfg.model, **_model_overrides(cfg))
    parent = cfg.init_from
    if parent is None:
        return model, phases, ""
    if (parent.model, parent.residual_autoencoding) != (cfg.model, cfg.residual_autoencoding):
        raise UsageError(f"train-ae init_from trains {parent.model} {_model_overrides(parent)}, this run "
                         f"{cfg.model} {_model_overrides(cfg)}: they must be the same architecture")
    done = ctx.input(parent)
    model.load_state_dict(models.load(Path(done.dir) / "ckpt" / FINAL_MODEL).state_dict())
    ctx.log(f"initialised from train-ae run {done.run_id}")
    return model, phases, done.run_id


def _run_phase(model, phase: PhaseConfig, phase_dir: Path, ctx, perceptual, data_for: Callable[[int], Any],
               done_name: str = "result.json",
               after: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train one phase, or reuse it when an interrupted run finished it before; its metrics, prefixed (plus what
    ``after()`` measures on the trained model, kept in the same result file)."""
    done_file = phase_dir / done_name
    for f in (done_file, phase_dir / FINAL_MODEL, phase_dir / TRAIN_STATE):  # a killed copy, a full disk
        if f.exists() and (why := damage(f)) is not None:
            quarantine(f, why)
    if done_file.exists() and (phase_dir / FINAL_MODEL).exists():  # resumed: this phase finished before
        model.load_state_dict(models.load(phase_dir / FINAL_MODEL).state_dict())
        ctx.log(f"{phase.name}: already complete, reusing {phase_dir}")
        return json.loads(done_file.read_text())
    ctx.log(f"{phase.name}: {phase.steps} steps at {phase.resolution} px, batch {phase.batch}, "
            f"trainable={phase.trainable}, gan={phase.gan}, lr={phase.lr}")
    res = train_autoencoder(model, phase, data_for(phase.resolution), ckpt_dir=phase_dir,
                            device=ctx.device, perceptual=perceptual, log=ctx.log)
    write_losses(phase_dir / LOSSES_FILE, res)
    out = res.metrics(prefix=f"{phase.name}_")
    out[f"_{phase.name}_seconds"] = round(res.s_per_step * (res.steps - res.resumed_from), 2)
    out.update(after() if after is not None else {})
    atomic_write_json(done_file, out)
    return out


LOSSES_FILE = "losses.csv"  # per phase folder: step and each loss term, one row per optimiser step


def write_losses(path: Path, res) -> None:
    """Append this call's per-step losses (a resumed run appends after the steps it kept)."""
    if not res.history:
        return
    keys = sorted(res.history[0])
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(["step", *keys])
        for i, h in enumerate(res.history):
            w.writerow([res.resumed_from + i + 1, *(f"{h[k]:.6g}" for k in keys)])


def plot_losses(run_dir: Path) -> Path | None:
    """``losses.png`` in the run folder: each phase's loss terms against its steps (a 20-step running mean)."""
    files = sorted((Path(run_dir) / "ckpt").glob(f"*/{LOSSES_FILE}"))
    if not files:
        return None
    from bench.emit import new_figure, save_figure
    fig, axes = new_figure(1, len(files), figsize=(4.5 * len(files), 3.2), squeeze=False)
    for ax, f in zip(axes[0], files):
        rows = list(csv.DictReader(f.open()))
        steps = [int(r["step"]) for r in rows]
        for k in (k for k in rows[0] if k != "step"):
            v = [float(r[k]) for r in rows]
            if not any(x > 0 for x in v):  # a term this phase does not use (e.g. the GAN terms before phase 3)
                continue
            smooth = [sum(v[max(0, i - 19):i + 1]) / len(v[max(0, i - 19):i + 1]) for i in range(len(v))]
            ax.plot(steps, smooth, label=k)
        ax.set_title(f.parent.name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    out = Path(run_dir) / "losses.png"
    save_figure(fig, out, "training losses (20-step running mean)")
    return out


def _probe(model: torch.nn.Module, resolution: int, n_images: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_images`` embedded held-out crops at ``resolution`` and the model's reconstructions of them."""
    ds = data.EmbeddedPhotos("test", resolution, n_images=n_images)
    x = torch.stack([ds[i] for i in range(len(ds))]).to(device)
    model.eval()
    with torch.no_grad():
        y = torch.cat([model.decode(model.encode(x[i:i + 16])) for i in range(0, len(x), 16)]).clamp(-1, 1)
    return x, y


def probe_psnr(model: torch.nn.Module, resolution: int, n_images: int, device: str) -> float:
    """Mean PSNR (dB, images in [0, 1], no uint8 rounding) of the model's reconstructions of the first ``n_images``
    embedded held-out crops at ``resolution``: the plateau rule's probe (not a reported metric; ``recon`` is)."""
    x, y = _probe(model, resolution, n_images, device)
    mse = ((y - x) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def probe_spread(model: torch.nn.Module, resolution: int, n_images: int, device: str) -> tuple[float, float]:
    """How much the model's reconstructions of the probe images vary across them relative to the images, and how
    much of the images' variation they reproduce (``image_groups.OutputSpread``: ratio, explained)."""
    s = spread_of(*_probe(model, resolution, n_images, device))
    return s.ratio(), s.explained()


def _run_to_plateau(model, phase: PhaseConfig, phase_dir: Path, ctx, perceptual, data_for: Callable[[int], Any],
                    rule: Plateau) -> dict[str, Any]:
    """``phase`` to a plateau: its steps, then doubled while a doubling gains >= ``rule.min_gain_db`` of probe PSNR
    and stays within ``rule.max_steps``. A collapsed model (``image_groups.is_collapsed`` on the probe) has not
    reached a plateau, whatever its PSNR curve. The learning rate is constant after warm-up, so continuing a run to 2N
    steps (a resumed checkpoint) is the run of 2N steps. Each stage's result (probe PSNR included) is kept, so a
    killed run resumes at its stage. The model ends with the last stage's weights."""
    curve: list[list[float]] = []
    target, out = phase.steps, {}
    while True:
        stage = dataclasses.replace(phase, steps=target)
        out = _run_phase(model, stage, phase_dir, ctx, perceptual, data_for, done_name=f"result-{target}.json",
                         after=lambda: {"_probe_psnr": probe_psnr(model, phase.resolution, rule.probe_images,
                                                                  ctx.device),
                                        "_probe_spread": probe_spread(model, phase.resolution, rule.probe_images,
                                                                      ctx.device)})
        curve.append([target, out["_probe_psnr"]])
        gain = curve[-1][1] - curve[-2][1] if len(curve) > 1 else math.inf
        ctx.log(f"plateau: {target} steps, probe PSNR {curve[-1][1]:.2f} dB"
                + (f" ({gain:+.2f} dB from {curve[-2][0]})" if len(curve) > 1 else ""))
        if gain < rule.min_gain_db or 2 * target > rule.max_steps:
            break
        target *= 2
    model.load_state_dict(models.load(phase_dir / FINAL_MODEL).state_dict())  # the last stage's (maybe reused)
    collapsed = is_collapsed(*out["_probe_spread"])
    reached = len(curve) > 1 and gain < rule.min_gain_db and not collapsed
    return {**out, f"{phase.name}_steps": target, "_plateau_curve": curve, "plateau_reached": int(reached),
            "plateau_gain_db": gain if len(curve) > 1 else float("nan"), "output_spread": out["_probe_spread"][0],
            "explained_variance": out["_probe_spread"][1],
            "collapsed": int(collapsed)}


def run(cfg: TrainAEConfig, ctx) -> dict:
    """Eval ``train-ae`` (fields: ``bench.configs.TrainAEConfig``): build -> each phase in turn -> final weights."""
    model, phases, parent_id = _build(cfg, ctx)
    perceptual = losses.build_perceptual_loss()
    if perceptual is None:
        ctx.log(f"perceptual: none ({losses.perceptual_unavailable_reason()})")
    metrics: dict[str, Any] = {}
    data_for = functools.partial(_train_source, cfg, ctx)  # crop side -> the run's training images
    for i, phase in enumerate(phases):
        phase_dir = ctx.run_dir / "ckpt" / f"{i}-{phase.name}"
        if cfg.plateau is not None:
            metrics.update(_run_to_plateau(model, phase, phase_dir, ctx, perceptual, data_for, cfg.plateau))
        else:
            metrics.update(_run_phase(model, phase, phase_dir, ctx, perceptual, data_for))
    models.save(model, ctx.run_dir / "ckpt" / FINAL_MODEL)
    plot_losses(ctx.run_dir)
    last = phases[-1].name
    metrics.update({
        "steps": sum(int(metrics[f"{p.name}_steps"]) for p in phases),
        "s_per_step": metrics[f"{last}_s_per_step"],
        "final_l1": metrics.get(f"{last}_l1_final", float("nan")),
        "perceptual": losses.perceptual_status(perceptual),
        "_perceptual_note": "LPIPS (AlexNet)" if perceptual is not None else losses.perceptual_unavailable_reason(),
        "_frozen_bn": "eval (BatchNorm layers whose parameters are frozen keep their running statistics)",
        "_phases": json.dumps([dataclasses.asdict(p) for p in phases]),
        "_from": parent_id,
        "_train_seconds": round(sum(float(metrics.get(f"_{p.name}_seconds", 0.0)) for p in phases), 1),
        "_outputs": [f"ckpt/{FINAL_MODEL}"],  # gitignored: a run folder without it is not complete (runner)
    })
    return metrics


# ---------------------------------------------------------------------------------------------------------------------
# ae-memory: §3.2, "memory cost: 153.98 GB -> 67.81 GB" (1024x1024, batch 12)
# ---------------------------------------------------------------------------------------------------------------------

def _memory_setup(cfg: MemoryConfig, device: str):
    """The model with only the ``cfg.trainable`` parameters trainable, those parameters, LPIPS (or None) and the
    phase whose optimiser settings are used."""
    torch.manual_seed(0)
    model = models.build(cfg.model).to(device)
    perceptual = losses.build_perceptual_loss() if cfg.lpips else None
    if perceptual is not None:
        perceptual = perceptual.to(device)
    names = set(SELECTORS[cfg.trainable](model, None))
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params, perceptual, PHASES["phase1" if cfg.trainable == "all_parameters" else "phase2"]


def _linear_fit(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares intercept and slope of bytes against batch size."""
    bs = sorted(points)
    n = len(bs)
    mx, my = sum(bs) / n, sum(points[b] for b in bs) / n
    slope = sum((b - mx) * (points[b] - my) for b in bs) / sum((b - mx) ** 2 for b in bs)
    return my - slope * mx, slope


def run_memory(cfg: MemoryConfig, ctx) -> dict:
    """Peak training memory of one trainable set (``all_parameters`` or ``middle_layers``).

    - ``method="cuda"`` (paper scale): ``torch.cuda.max_memory_allocated`` over 2 training steps (L1 [+ LPIPS if
      its weights are cached], fp16 autocast with fp32 master weights, AdamW) at each batch size; fit a + b·B over the
      batches that fit; report the fit at ``target_batch`` (``train_memory_gb``, GB = 1e9 bytes) next to a direct
      measurement at ``target_batch`` when it fits (``train_memory_gb_direct``).
    - ``method="saved-tensors"`` (small scale, CPU): bytes of parameters + gradients + AdamW states of the trainable
      set + the activations autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``, each storage
      counted once), fitted and extrapolated the same way. Deterministic; an estimate of the peak, not a measured RSS.
    """
    if cfg.trainable not in SELECTORS:
        raise UsageError(f"ae-memory: trainable must be one of {sorted(SELECTORS)}")
    if cfg.method == "cuda" and (ctx.device != "cuda" or not torch.cuda.is_available()):
        raise Unavailable("peak GPU training memory needs a CUDA device (run with --device cuda); the small scale "
                          "measures the same ratio on CPU")
    device = "cuda" if cfg.method == "cuda" else "cpu"
    model, params, perceptual, phase = _memory_setup(cfg, device)
    measure = _measure_cuda if cfg.method == "cuda" else _measure_saved_tensors
    target, points, notes = cfg.target_batch, {}, {}
    for b in sorted(set(cfg.batches) | ({target} if cfg.method == "cuda" or cfg.direct_target else set())):
        try:
            points[b] = measure(model, params, perceptual, phase, b, cfg.resolution)
            ctx.log(f"ae-memory {cfg.trainable} B={b}: {points[b] / 1e9:.3f} GB")
        except torch.cuda.OutOfMemoryError:
            notes[b] = "OOM"
            ctx.log(f"ae-memory {cfg.trainable} B={b}: OOM")
            torch.cuda.empty_cache()
    fitted = {b: points[b] for b in cfg.batches if b in points}
    if len(fitted) < 2:
        raise Unavailable(f"fewer than two batch sizes fit in memory ({notes})")
    icpt, slope = _linear_fit(fitted)
    out = {
        "train_memory_gb": round((icpt + slope * target) / 1e9, 4),
        "train_memory_gb_direct": round(points[target] / 1e9, 4) if target in points else
        f"unavailable ({notes.get(target, 'not measured at this scale')})",
        "fit_intercept_gb": round(icpt / 1e9, 5), "fit_slope_gb_per_image": round(slope / 1e9, 5),
        "trainable_params": sum(p.numel() for p in params),
        "perceptual": losses.perceptual_status(perceptual),
        "_points_gb": json.dumps({b: round(v / 1e9, 5) for b, v in points.items()}),
        "_method": cfg.method, "_target_batch": target, "_resolution": cfg.resolution,
        "_dtype": "float16 autocast, fp32 master weights" if cfg.method == "cuda" else "float32",
    }
    if cfg.method == "cuda":
        out["_gpu"] = torch.cuda.get_device_name(0)
    return out


def _measure_cuda(model, params, perceptual, phase, batch: int, res: int) -> float:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.AdamW(params, lr=phase.lr, betas=phase.betas, weight_decay=phase.weight_decay)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.rand(batch, 3, res, res, device="cuda") * 2 - 1
    model.train()
    for _ in range(2):  # the second step holds the optimiser states
        with torch.autocast("cuda", dtype=torch.float16):
            y = model(x)
            loss = losses.l1_loss(y, x) + (perceptual(y, x) if perceptual is not None else 0.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=False)  # keep gradient buffers allocated, as in a training loop's steady state
    torch.cuda.synchronize()
    peak = float(torch.cuda.max_memory_allocated())
    del opt, x, y, loss
    for p in params:
        p.grad = None
    return peak


def _measure_saved_tensors(model, params, perceptual, phase, batch: int, res: int) -> float:
    """Bytes: trainable parameters' grads + 2 AdamW states, all parameters, input, and activations saved for backward."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    if perceptual is not None:
        param_ptrs |= {p.untyped_storage().data_ptr() for p in perceptual.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in param_ptrs and s.data_ptr() != 0:
            saved[s.data_ptr()] = s.nbytes()
        return t

    x = torch.rand(batch, 3, res, res) * 2 - 1
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = model(x)
        loss = losses.l1_loss(y, x) + (perceptual(y, x) if perceptual is not None else 0.0)
    saved[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()  # the input batch, counted once
    activations = sum(saved.values())
    del loss, y
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in params)
    return float(weights + 3 * trainable + activations)  # 3 = grad + exp_avg + exp_avg_sq
