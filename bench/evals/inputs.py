"""What an autoencoder evaluation loads: the model of a ``ReconConfig`` (a training run's checkpoint, released
weights from ``--weights``, or a fixed random init for smoke runs) and its images (embedded photos, synthetic, or a
``--data`` folder), each failure a one-line error naming the fix. Reconstruction, diffusion training and generation
load their autoencoders and data through these."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import models
import models.zoo
from bench.configs import FOLDER_SETS, DataOption, Dataset, ReconConfig
from bench.errors import RowFailed, Unavailable, UsageError
from models import data


def registry_fc(name: str) -> tuple[int, int]:
    """(f, c) of a registered autoencoder, read from the registry (built on the meta device: no memory)."""
    rec = models.zoo.info(name)
    return rec.spatial_compression, rec.latent_channels


def is_released(name: str) -> bool:
    """Official checkpoints exist: the registry knows their parameter count (released DC-AEs, SD-VAE f8)."""
    return models.zoo.official_params(name) is not None


def load_checkpoint(cfg: ReconConfig, ctx: Any) -> tuple[torch.nn.Module, str]:
    """The final weights of the training run ``cfg.checkpoint``, checked against ``cfg.model``'s (f, c)."""
    dep = ctx.input(cfg.checkpoint)
    path = Path(dep.dir) / "ckpt" / "model.safetensors"
    if not path.is_file():
        raise Unavailable(f"training run {dep.run_id} has no checkpoint at {path}")
    try:
        model = models.load(path)
    except (ValueError, OSError, KeyError) as e:  # models.load: a damaged or foreign file, in one line
        raise RowFailed(f"checkpoint {path} cannot be loaded ({type(e).__name__}: {e})") from None
    want = registry_fc(cfg.model)
    got = (model.spatial_compression, model.latent_channels)
    if got != want:
        raise RowFailed(f"checkpoint {path} is f{got[0]}c{got[1]}, but the config names {cfg.model} (f{want[0]}c"
                        f"{want[1]}); fix 'checkpoint' or 'model'")
    st = path.stat()
    return model, f"{dep.run_id}:{st.st_size}:{st.st_mtime_ns}"


def load_official(cfg: ReconConfig, ctx: Any) -> tuple[torch.nn.Module, str]:
    """The released checkpoint of ``cfg.model`` from ``--weights`` (its own sub-folder, or the folder itself)."""
    name, root = cfg.model, ctx.options.get("weights")
    if not root:
        raise UsageError(f"{name} needs its official checkpoint: pass --weights FOLDER (holding {name}/ or its files)")
    own = Path(root) / name
    try:
        model = models.load_pretrained(name, own if own.exists() else Path(root))
    except (FileNotFoundError, ValueError) as e:  # models.load_pretrained: missing / mismatched files
        if own.exists():
            raise RowFailed(f"official weights of {name} in {own} do not load ({e})") from None
        why = "" if is_released(name) else "; no official checkpoint was released: train it (python -m bench needs)"
        raise Unavailable(f"no weights for {name} under --weights {root} (expected {own}/{why})") from None
    return model, f"pretrained:{name}"


def load_model(cfg: ReconConfig, ctx: Any) -> tuple[torch.nn.Module, str]:
    """The autoencoder of ``cfg`` and an id of its weights (for shard keys)."""
    if cfg.checkpoint is not None:
        return load_checkpoint(cfg, ctx)
    if cfg.weights:
        return load_official(cfg, ctx)
    torch.manual_seed(0)  # untrained (smoke): a fixed random init
    return models.build(cfg.model), f"untrained-seed0:{cfg.model}"


def build_dataset(cfg: ReconConfig, ctx: Any) -> Any:
    ds = cfg.dataset
    if ds.kind == "embedded":
        try:
            return data.EmbeddedPhotos(ds.name, cfg.resolution, n_images=cfg.n_images, seed=cfg.seed)
        except ValueError as e:
            raise UsageError(f"{e}; lower n_images or the resolution") from None
    if ds.kind == "synthetic":
        return data.SyntheticDataset(cfg.n_images or 16, cfg.resolution, seed=cfg.seed)
    if ds.kind == "path":
        return user_images(ds, cfg.resolution, cfg.n_images)
    option = ctx.options.get("data") or DataOption()
    if not option:
        raise UsageError(f"this row evaluates on {FOLDER_SETS[ds.name]}: pass --data FOLDER (holding {ds.name}/) or "
                         f"--data {ds.name}=PATH (it cannot be downloaded)")
    path = option.resolve(ds)
    if path is None:  # never another set's images under this set's name
        raise Unavailable(f"no {ds.name} folder under {option.root}; pass --data {ds.name}=PATH" if option.root
                          else f"no {ds.name} folder given; pass --data {ds.name}=PATH")
    try:
        return data.ImageFolderDataset(path, cfg.resolution, n_images=cfg.n_images)
    except data.DataFolderError as e:  # not a folder of readable images
        raise UsageError(str(e)) from None


def user_images(ds: Dataset, resolution: int, n_images: int | None) -> Any:
    """A user's image folder (``configs.user_folder``), refused in one line if its files changed since the command
    named it (a changed folder is another run)."""
    if not Path(ds.name).is_dir():
        raise UsageError(f"{ds.name} is not a folder any more; put the images back or run the command on a folder")
    if data.folder_identity(ds.name) != ds.digest:
        raise UsageError(f"{ds.name} changed since this run was named (files added, removed or modified); run the "
                         f"command again to name a new run")
    try:
        return data.ImageFolderDataset(ds.name, resolution, n_images=n_images)
    except data.DataFolderError as e:
        raise UsageError(str(e)) from None
