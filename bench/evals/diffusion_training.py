"""Eval ``train-diffusion`` (paper §4.1; Tables 1, 3, 4, 5): a U-ViT or DiT trained with the official recipe on one
autoencoder's latents, or a PixArt-α on latents and T5 caption features (Table 5), and the pieces the ``generate``
eval (``bench/evals/generation.py``) shares with it.

``run_train`` (``bench.configs.TrainDiffusionConfig``): the autoencoder (a train-ae run via ``ctx.input``, the
official weights, a user's autoencoder (``own_autoencoder``: a diffusers folder, a file or ``module:function``, whose
posterior mean is its latent, as ``eval-ae`` scores it), or untrained at smoke scale) encodes the data set once; the
latents (× the scaling factor, as the official ``dc_ae_generate_latent.py``; one seeded posterior sample per image for a released SD-VAE, as that script,
the posterior mean for one trained here: ``posterior_seed_of``) are cached in ``runs/_cache/latents-<key>.safetensors``
keyed by the autoencoder's weights, the images, the resolution, the factor and the posterior seed. Labels are the
class of each image: at small scale the embedded crop's source photo (8 classes), for a folder (named or a user's)
its top-level sub-folder (ImageNet's synsets).
``models.train_diffusion.train_diffusion`` runs the recipe (the official ``UVIT_RECIPE`` / ``DIT_RECIPE``, or our
``PIXART_RECIPE`` (IDDPM, PixArt-α's AdamW settings: a stated deviation, the DC-AE one is not public), then
``DIFFUSION_SCALE_DEFAULTS``, then the config's fields); ``ckpt/train_state.pt`` makes it resumable and
``ckpt/model.safetensors`` holds the EMA weights.

Text-to-image (``pixart-*``, ``captions`` set): each image is conditioned on the precomputed T5-XXL features of
the same file stem in the ``captions`` folder (``bench/evals/captions.py``: format, validation, pairing); the
backbone drops a caption to its null caption with probability 0.1 (``models.pixart.CaptionEmbedder``), the null
that the generate eval guides against. At paper scale a missing image or caption folder makes the row unavailable,
naming the folder and how to give it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.configs import DIFFUSION_SCALE_DEFAULTS, OwnAutoencoder, ReconConfig, TrainDiffusionConfig
from bench.errors import RowFailed, UsageError
from bench.evals.captions import (
    CaptionFolder,
    caption_folder,
    image_stems,
    named_folder,
)
from bench.evals import autoencoder_sources as sources
from bench.evals.inputs import build_dataset, load_model, registry_fc
from bench.outputs import TrainedDiffusion
from bench.provenance import damage, quarantine
from models import backbones, data, distributed
from models.train_diffusion import (
    RECIPES,
    DiffusionRecipe,
    cached_latents,
    encode_latents,
    train_diffusion,
)
from models.train_state import FINAL_MODEL, TRAIN_STATE, mix_seed


def uint8_batches(images, batch_size: int) -> Iterator[torch.Tensor]:
    """The data set's images as uint8 (B, 3, r, r) batches; an unreadable image is a usage error (never skipped
    silently, which would shift the labels)."""
    for start in range(0, len(images), batch_size):
        batch = [images.get_uint8(i) for i in range(start, min(start + batch_size, len(images)))]
        if any(u is None for u in batch):
            raise UsageError(f"{images.description}: an image in {start}..{start + len(batch) - 1} cannot be read; "
                             f"remove it from the folder")
        yield torch.stack(batch)


# ----------------------------------------------------------------------------------------------------------------
# Shared with the generate eval: the autoencoder, the data, the backbone
# ----------------------------------------------------------------------------------------------------------------

def images_of(ds, resolution: int, n_images: int | None, autoencoder: str, ctx) -> Any:
    """A data set as the reconstruction eval builds it (embedded crops, a --data folder, or synthetic images)."""
    return build_dataset(ReconConfig(autoencoder, resolution, dataset=ds, n_images=n_images), ctx)


def load_autoencoder(cfg: TrainDiffusionConfig, ctx) -> tuple[nn.Module, str]:
    """The autoencoder whose latents ``cfg`` models, and an id of its weights: the ``autoencoder_checkpoint`` run,
    the official weights (``weights``, --weights) or, at smoke scale only, a seeded random init."""
    if cfg.own_autoencoder is not None:
        return _load_own(cfg.own_autoencoder)
    if cfg.autoencoder_checkpoint is None and not cfg.weights and not ctx.scale.random_init:
        raise UsageError(f"train-diffusion on an untrained {cfg.autoencoder} is a smoke check only; set "
                         f"autoencoder_checkpoint (a train-ae run) or weights (--weights)")
    recon = ReconConfig(cfg.autoencoder, cfg.resolution, checkpoint=cfg.autoencoder_checkpoint, weights=cfg.weights)
    model, weights_id = load_model(recon, ctx)  # one loader for recon and diffusion (checks f and c)
    return model.eval(), weights_id


@functools.lru_cache(maxsize=2)
def _load_own(own: OwnAutoencoder) -> tuple[nn.Module, str]:
    """The user's autoencoder (``TrainDiffusionConfig.own_autoencoder``), refused in one line if its weights changed
    since the command named the run; loaded once per process: the command's checks and the run read the same model."""
    model, digest = sources.load(sources.Source(own.spec, own.kind, own.weights_digest))
    if digest != own.weights_digest:
        raise UsageError(f"{own.spec} changed since this run was named (weights {digest}, the run's "
                         f"{own.weights_digest}); run the command again to name a new run")
    return model.eval(), f"own:{digest}"


def autoencoder_fc(cfg: TrainDiffusionConfig) -> tuple[int, int]:
    """(f, c) of the latents ``cfg`` models: the registry's, or the user's autoencoder's (loaded to read them)."""
    if cfg.own_autoencoder is not None:
        model, _ = _load_own(cfg.own_autoencoder)
        return model.spatial_compression, model.latent_channels
    f, c = registry_fc(cfg.autoencoder)
    ckpt = cfg.autoencoder_checkpoint
    fc_ckpt = registry_fc(ckpt.model) if ckpt is not None else (f, c)
    if fc_ckpt != (f, c):
        raise UsageError(f"autoencoder_checkpoint trains {ckpt.model} (f{fc_ckpt[0]}c{fc_ckpt[1]}) but autoencoder "
                         f"is {cfg.autoencoder} (f{f}c{c}): compression and latent channels must match")
    return f, c


def formulation_of(backbone: str) -> str:
    """"uvit", "dit" or "pixart": the family of a registered backbone, which picks its recipe and sampler."""
    if backbone not in backbones.BACKBONES:
        raise UsageError(f"unknown backbone {backbone!r}; use one of {', '.join(backbones.BACKBONES)}")
    family = backbones.BACKBONES[backbone].family
    if family not in RECIPES:
        raise UsageError(f"{backbone} ({family}) has no training recipe; train-diffusion trains uvit-*, dit-* and "
                         f"pixart-*")
    return family


def check_conditioning(cfg: TrainDiffusionConfig, family: str, ctx) -> None:
    """Class labels for uvit / dit, caption features for pixart (text-to-image); at paper scale, the image and
    caption folders must be given (else the row is unavailable, naming where they go)."""
    if not backbones.BACKBONE_FAMILIES[family].text_to_image:
        if cfg.captions is not None:
            raise UsageError(f"captions apply to text-to-image backbones (pixart-*), not {cfg.backbone}; remove them")
        return
    if cfg.captions is None:
        raise UsageError(f"{cfg.backbone} is text-to-image: set captions (T5 caption features, e.g. "
                         f"folder('mjhq-30k-t5'); bench/evals/captions.py gives the format)")
    if not cfg.conditional:
        raise UsageError(f"{cfg.backbone} is text-conditional; leave conditional=True (captions are its condition)")
    if ctx.scale.full_protocol:
        for ds in (cfg.dataset, cfg.captions):
            if ds.kind == "folder":
                named_folder(ds, ctx)  # Unavailable: no such folder under --data


def latent_fc(cfg: TrainDiffusionConfig) -> tuple[int, int]:
    """(f, c) of the latents, checked against the resolution and patch size (the own-model commands call it before
    any run folder)."""
    try:
        f, c = autoencoder_fc(cfg)
    except ValueError as e:  # an unknown autoencoder name
        raise UsageError(f"train-diffusion: {e}") from None
    if cfg.resolution % f:
        raise UsageError(f"resolution {cfg.resolution} is not divisible by {cfg.autoencoder}'s f={f}")
    if (cfg.resolution // f) % cfg.patch_size:
        raise UsageError(f"patch size {cfg.patch_size} does not divide the latent side {cfg.resolution // f} "
                         f"({cfg.resolution} px / f{f}); use a patch size that divides it")
    return f, c


# the recipe values a run config may override: the fields the recipe and the config share
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(DiffusionRecipe)
                      if f.name in {g.name for g in dataclasses.fields(TrainDiffusionConfig)})


def recipe_of(cfg: TrainDiffusionConfig, family: str, scale: str) -> DiffusionRecipe:
    """The official recipe of the formulation, then the scale's defaults, then the config's recipe fields."""
    asked = {k: getattr(cfg, k) for k in RECIPE_FIELDS if getattr(cfg, k) is not None}
    try:
        return dataclasses.replace(RECIPES[family], **{**DIFFUSION_SCALE_DEFAULTS[scale], **asked})
    except ValueError as e:
        raise UsageError(f"train-diffusion: {e}") from None


def build_backbone(cfg: TrainDiffusionConfig, latent_channels: int, latent_size: int, num_classes: int) -> nn.Module:
    """The backbone of ``cfg`` for this latent shape and class count (the null label is ``num_classes``; a
    text-to-image backbone has no classes and ignores it)."""
    overrides = {k: getattr(cfg, k) for k in ("depth", "hidden_size", "num_heads") if getattr(cfg, k) is not None}
    if not backbones.BACKBONE_FAMILIES[backbones.BACKBONES[cfg.backbone].family].text_to_image:
        overrides["num_classes"] = num_classes
    try:
        return backbones.build_backbone(cfg.backbone, latent_channels, latent_size, cfg.patch_size, **overrides)
    except (TypeError, ValueError) as e:  # e.g. a width the head count does not divide
        raise UsageError(f"train-diffusion: {cfg.backbone} {overrides}: {e}") from None


def captions_of(cfg: TrainDiffusionConfig, images, ctx) -> CaptionFolder:
    """The caption features of each training image (paired by file stem), validated before any encoding."""
    text = backbones.BACKBONES[cfg.backbone].config  # text tokens L and caption channels E (PixArt-α: 120 x 4096)
    return caption_folder(cfg.captions, ctx, text.text_tokens, text.caption_channels, stems=image_stems(images))


def class_labels(cfg: TrainDiffusionConfig, images) -> tuple[torch.Tensor | None, int]:
    """(N,) int64 class of each image and the class count; (None, 0) for an unconditional run.

    Embedded crops: the index of their source photo among the split's photos. A folder: its top-level sub-folder
    (ImageNet's synset folders), in sorted order."""
    if not cfg.conditional:
        return None, 0
    if isinstance(images, data.EmbeddedPhotos):
        names = [s.name for s in data.sources(images.split)]
        return torch.tensor([names.index(c.source) for c in images.plan], dtype=torch.long), len(names)
    if isinstance(images, data.ImageFolderDataset):
        parts = [p.relative_to(images.root).parts for p in images.files]
        if any(len(p) < 2 for p in parts):
            raise UsageError(f"{images.root}: a class-conditional run needs one sub-folder per class (ImageNet's "
                             f"layout); set conditional=False for an unconditional model")
        names = sorted({p[0] for p in parts})
        return torch.tensor([names.index(p[0]) for p in parts], dtype=torch.long), len(names)
    raise UsageError(f"{images.description} has no class labels; set conditional=False")


def posterior_seed_of(cfg: TrainDiffusionConfig, seed: int) -> int | None:
    """The seed of the one posterior sample per image that a variational autoencoder's latents are, or None for its
    posterior mean (a deterministic autoencoder such as DC-AE ignores it).

    Released weights (``weights``: sd-vae-f8 is sd-vae-ft-ema, trained with its KL term) are sampled, as the official
    ``dc_ae_generate_latent.py`` (``latent_dist.sample()``, reference/generation.md §1). An autoencoder trained here
    (``autoencoder_checkpoint``: train-ae trains the posterior mean with L1 / LPIPS / GAN and no KL term) or an
    untrained one (smoke) keeps the mean: its variance head never trains, and a sample would be mostly that untrained
    noise (measured on sd-vae-f8c4-tiny / sd-vae-f32c64-tiny at init, 128 px: posterior std 0.96 / 0.99 against a
    mean RMS of 0.23 / 0.18)."""
    return seed if cfg.weights and cfg.autoencoder_checkpoint is None else None


def latents_of(cfg: TrainDiffusionConfig, autoencoder: nn.Module, ae_id: str, images, ctx, device: str,
               posterior_seed: int | None) -> tuple[torch.Tensor, float]:
    """The data set's latents × scaling factor (cached by content, rank 0 first) and the factor used;
    ``posterior_seed``: see ``posterior_seed_of``."""
    s_ae = autoencoder.scaling_factor
    if s_ae is None and cfg.latent_scale == "autoencoder":
        raise UsageError(f"{cfg.autoencoder} declares no scaling factor; use latent_scale 'unit-rms' (--latent-scale "
                         f"unit-rms: 1 / RMS of these latents)")
    s_ae = 1.0 if s_ae is None else float(s_ae)
    key = {"autoencoder": cfg.autoencoder, "weights": ae_id, "images": images.identity, "n": len(images),
           "resolution": cfg.resolution, "scaling_factor": s_ae, "posterior_seed": posterior_seed}
    cache_dir = Path(ctx.run_dir).parent / "_cache"

    def compute() -> torch.Tensor:
        ctx.log(f"encoding {len(images)} images with {cfg.autoencoder} ({ae_id}) into the latent cache")
        return encode_latents(autoencoder.to(device), uint8_batches(images, 64), s_ae, device=device,
                              posterior_seed=posterior_seed)

    if distributed.rank() == 0:  # one rank computes, the others read the cached file
        latents = cached_latents(cache_dir, key, compute, log=ctx.log)
    distributed.barrier()
    if distributed.rank() != 0:
        latents = cached_latents(cache_dir, key, compute, log=ctx.log)
    if cfg.latent_scale == "autoencoder":
        return latents, s_ae
    rms = float(latents.pow(2).mean().sqrt())  # unit-rms: the reduced AEs' registry factor is a placeholder 1.0
    return latents / rms, s_ae / rms


# ----------------------------------------------------------------------------------------------------------------
# Eval train-diffusion
# ----------------------------------------------------------------------------------------------------------------

def run_train(cfg: TrainDiffusionConfig, ctx) -> dict:
    """Eval ``train-diffusion``: autoencoder -> cached latents (+ labels) -> backbone -> ``train_diffusion``."""
    # the config's checks first: a one-line UsageError / Unavailable before any work
    family = formulation_of(cfg.backbone)
    check_conditioning(cfg, family, ctx)
    f, c = latent_fc(cfg)
    recipe = recipe_of(cfg, family, ctx.scale.name)
    _, _, device = distributed.init_distributed(ctx.device)
    images = images_of(cfg.dataset, cfg.resolution, cfg.n_images, cfg.autoencoder, ctx)
    captions = captions_of(cfg, images, ctx) if backbones.BACKBONE_FAMILIES[family].text_to_image else None
    autoencoder, ae_id = load_autoencoder(cfg, ctx)
    posterior_seed = posterior_seed_of(cfg, recipe.seed)
    latents, factor = latents_of(cfg, autoencoder, ae_id, images, ctx, device, posterior_seed)
    labels, n_classes = class_labels(cfg, images) if captions is None else (None, 0)
    torch.manual_seed(mix_seed(recipe.seed, "backbone-init"))
    backbone = build_backbone(cfg, c, cfg.resolution // f, n_classes)
    ckpt = Path(ctx.run_dir) / "ckpt"
    for p in (ckpt / TRAIN_STATE, ckpt / FINAL_MODEL):  # a killed copy, a full disk: recompute from the last good
        if p.exists() and (why := damage(p)) is not None:
            quarantine(p, why)
    ctx.log(f"train-diffusion {cfg.backbone} on {len(latents)} latents {tuple(latents.shape[1:])} of "
            f"{images.description}: {recipe.steps} steps, batch {recipe.batch}, lr {recipe.lr}")
    try:
        res = train_diffusion(backbone, recipe, latents, labels, ckpt_dir=ckpt, device=device, log=ctx.log,
                              captions=captions)
    except ValueError as e:  # a train_state.pt of another recipe or other latents in this run folder
        raise RowFailed(f"train-diffusion: {e}") from None
    return {
        **res.metrics(),
        "params": backbones.trainable_params(backbone),
        "tokens": (cfg.resolution // f // cfg.patch_size) ** 2,
        "_recipe": json.dumps(dataclasses.asdict(recipe)),
        **TrainedDiffusion(tuple(latents.shape[1:]), n_classes, factor).to_metrics(),
        "_autoencoder_weights": ae_id,
        "_posterior_seed": posterior_seed,  # None: the posterior mean (or a deterministic autoencoder)
        "_dataset": images.description, "_dataset_id": images.identity, "_n_images": len(images),
        "_final_weights": "ema" if recipe.ema_decay > 0 else "raw (the recipe has no EMA)",
        "_outputs": [f"ckpt/{FINAL_MODEL}", f"ckpt/{TRAIN_STATE}"],  # gitignored: without them, not complete
        **(_caption_records(captions, backbone) if captions is not None else {}),
    }


def _caption_records(captions: CaptionFolder, backbone: nn.Module) -> dict:
    """What a text-to-image run records of its conditioning, and that its recipe is our choice."""
    return {"_conditioning": f"{captions.description} paired by image stem; caption dropout "
                             f"{backbone.config.caption_dropout} to the null caption",
            "_captions_id": captions.identity,
            "_recipe_note": "ours, a stated deviation (models.train_diffusion.PIXART_RECIPE: IDDPM with PixArt-alpha's "
                            "published AdamW settings); the DC-AE text-to-image recipe is not public"}
