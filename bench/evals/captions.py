"""Caption features for text-to-image runs (Table 5, PixArt-α): the folder format, its loader, a synthetic folder.

T5-XXL cannot run here (no weights, no network), so text-to-image runs read caption features computed elsewhere.
The folder format is PixArt-α's own feature-extraction layout, so features extracted for PixArt-α are used as
they are::

    <folder>/[<sub-folders>/]<image stem>.npz      one file per image; a stem names one file only
        caption_feature   (1, L, 4096) or (L, 4096), float16 or float32: T5-XXL features, padded to L tokens
        attention_mask    (1, L) or (L,), 0/1 (or bool): 1 = a caption token, 0 = padding; at least one 1

L is the backbone's ``text_tokens`` (120 for PixArt-α) and 4096 its ``caption_channels`` (T5-XXL's width). Pairing:
a training image goes with the ``.npz`` of its file stem (MJHQ-30K ``people/<id>.jpg`` with ``<id>.npz``); an image
without features is an error, extra ``.npz`` files are ignored. A prompt folder (eval ``generate``) is read in stem
order: sample i is conditioned on the i-th file. Embedded and synthetic image sets have no file names; their image
i has the stem ``f"{i:05d}"``. The mask is passed to the backbone (``models.pixart``: padded tokens do not attend).

``SYNTHETIC`` captions (smoke scale and tests only): random features and masks written in this very format under
``runs/_cache/captions-synthetic-<key>/`` and read back through the same loader, so a smoke run exercises the
folder path end to end. They are not text: a pipeline check, never a result.

Why this file lives in ``bench/evals`` and not ``models/``: it resolves ``--data`` folders and its errors are the
CLI's one-line ``UsageError`` / ``Unavailable`` (``bench.errors``), which ``models/`` (it never imports bench)
cannot raise. ``models/`` sees tensors only: ``CaptionFolder`` is a ``models.train_diffusion.CaptionSource`` whose
batches are ``models.pixart.Caption`` s.
"""
from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.configs import FOLDER_SETS, DataOption, Dataset
from bench.errors import Unavailable, UsageError
from bench.evals.shards import save_npz
from models import data
from models.pixart import Caption
from models.train_state import mix_seed

FEATURES_KEY = "caption_feature"  # PixArt-α's key names
MASK_KEY = "attention_mask"
FORMAT = ("one .npz per image stem holding caption_feature (1, L, 4096) and attention_mask (1, L), L = 120 for "
          "PixArt-α (bench/evals/captions.py)")
SYNTHETIC_VERSION = 1             # bump when the synthetic features change (their folder name carries it)


class CaptionFolderError(UsageError):
    """A caption features folder that cannot be used as it is: one line naming the file, the problem and the fix."""


# ----------------------------------------------------------------------------------------------------------------
# The loader: a validated folder, read a batch at a time
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaptionFolder:
    """Validated caption features: ``files[i]`` holds item i's (the paired image's, or prompt i's) features."""

    root: Path
    files: tuple[Path, ...]  # one .npz per item, in item order
    tokens: int              # L, the backbone's text_tokens
    channels: int            # E, the backbone's caption_channels

    def __len__(self) -> int:
        return len(self.files)

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.files]

    def batch(self, indices: Sequence[int]) -> Caption:
        """Features (b, L, E) float32 and mask (b, L) bool of these items, read from their files (CPU)."""
        feats, masks = [], []
        for i in indices:
            with np.load(self.files[i]) as z:
                feats.append(torch.from_numpy(z[FEATURES_KEY].reshape(self.tokens, self.channels).astype(np.float32)))
                masks.append(torch.from_numpy(z[MASK_KEY].reshape(self.tokens).astype(bool)))
        return Caption(torch.stack(feats), torch.stack(masks))

    @property
    def identity(self) -> str:
        """Hash of relative names, sizes and mtimes (as ``ImageFolderDataset``: hashing 30 GB would take minutes)."""
        return data.files_identity(self.root, self.files, f"{self.tokens}x{self.channels}")

    @property
    def description(self) -> str:
        return f"caption features ({len(self)} .npz of {self.tokens}x{self.channels})"


def _files_by_stem(root: Path) -> dict[str, Path]:
    """Every .npz under ``root`` by file stem; a stem named twice is an error (pairing would be ambiguous)."""
    out: dict[str, Path] = {}
    for p in sorted(root.rglob("*.npz")):
        if p.stem in out:
            raise CaptionFolderError(f"{root}: the stem {p.stem!r} names two files ({out[p.stem].relative_to(root)}, "
                                     f"{p.relative_to(root)}); images pair with features by stem, so keep one")
        out[p.stem] = p
    if not out:
        raise CaptionFolderError(f"{root} holds no .npz caption features; expected {FORMAT}")
    return out


def _npy_header(zf: zipfile.ZipFile, key: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of array ``key`` of an .npz, read from its header only (not the 1-2 MB of features)."""
    names = zf.namelist()
    if f"{key}.npy" not in names:
        raise CaptionFolderError(f"{path} has no {key!r} (it holds {', '.join(n[:-4] for n in names)}); expected "
                                 f"{FORMAT}")
    with zf.open(f"{key}.npy") as fp:
        version = np.lib.format.read_magic(fp)
        if version not in ((1, 0), (2, 0)):
            raise CaptionFolderError(f"{path}: {key} is a .npy of format {version}; re-save it with numpy.savez")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fp)
    return shape, dtype


def check_file(path: Path, tokens: int, channels: int) -> None:
    """One .npz against the format: keys, feature shape (L and channel count), dtype, mask shape and values."""
    try:
        with zipfile.ZipFile(path) as zf:
            shape, dtype = _npy_header(zf, FEATURES_KEY, path)
            mask_shape, _ = _npy_header(zf, MASK_KEY, path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CaptionFolderError(f"{path} is not a readable .npz ({type(e).__name__}); re-extract it") from None
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] != 1):
        raise CaptionFolderError(f"{path}: {FEATURES_KEY} has shape {shape}; expected (1, {tokens}, {channels}) or "
                                 f"({tokens}, {channels}), one caption per file")
    if shape[-1] != channels:
        raise CaptionFolderError(f"{path}: {FEATURES_KEY} has {shape[-1]} channels but the backbone's "
                                 f"caption_channels is {channels}; extract the features with T5-XXL ({channels}-d)")
    if shape[-2] != tokens:
        raise CaptionFolderError(f"{path}: {FEATURES_KEY} has {shape[-2]} tokens but the backbone takes {tokens}; "
                                 f"extract with the tokenizer padding (and truncating) to {tokens} tokens")
    if dtype not in (np.float16, np.float32):
        raise CaptionFolderError(f"{path}: {FEATURES_KEY} is {dtype}; store float16 or float32 features")
    if mask_shape not in ((1, tokens), (tokens,)):
        raise CaptionFolderError(f"{path}: {MASK_KEY} has shape {mask_shape}; expected (1, {tokens}) or ({tokens},)")
    with np.load(path) as z:
        mask = z[MASK_KEY]
    if not np.isin(mask, (0, 1)).all() or not mask.any():
        raise CaptionFolderError(f"{path}: {MASK_KEY} must be 0/1 with at least one 1 (a caption token); got "
                                 f"values {np.unique(mask)[:4].tolist()}")


def open_caption_folder(root: str | Path, tokens: int, channels: int, stems: Sequence[str] | None = None,
                        first: int | None = None) -> CaptionFolder:
    """The caption features under ``root``, validated file by file: those of ``stems`` in that order (a training
    set's images), or (``stems=None``: a prompt folder) the first ``first`` files by stem (None: all)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CaptionFolderError(f"caption features folder {root} does not exist; pass the folder holding {FORMAT}")
    by_stem = _files_by_stem(root)
    if stems is None:
        names = sorted(by_stem)[:first]
        if first is not None and len(names) < first:
            raise CaptionFolderError(f"{root} holds {len(names)} caption features but {first} are asked for; lower "
                                     f"n_samples to {len(names)} or add prompts")
    else:
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise CaptionFolderError(f"{root} has no caption features for {len(missing)} of {len(stems)} images "
                                     f"(first: image stem {missing[0]!r}, expected {missing[0]}.npz); extract them "
                                     f"or remove those images from the image folder")
        names = list(stems)
    for name in names:
        check_file(by_stem[name], tokens, channels)
    return CaptionFolder(root, tuple(by_stem[n] for n in names), tokens, channels)


def image_stems(images: Any) -> list[str]:
    """The pairing key of each image of a data set: its file stem (a folder), else ``f"{i:05d}"``."""
    if not isinstance(images, data.ImageFolderDataset):
        return [f"{i:05d}" for i in range(len(images))]
    seen: dict[str, Path] = {}
    for p in images.files:
        if p.stem in seen:
            raise CaptionFolderError(f"{images.root}: two images share the stem {p.stem!r} ({seen[p.stem].name} in "
                                     f"{seen[p.stem].parent}, {p.name} in {p.parent}); features pair with images by "
                                     f"stem, so rename one")
        seen[p.stem] = p
    return list(seen)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic features (smoke scale, tests): the same format, random contents
# ----------------------------------------------------------------------------------------------------------------

def write_synthetic_folder(folder: Path, stems: Sequence[str], tokens: int, channels: int, seed: int = 0) -> Path:
    """Random caption features in the folder format, one .npz per stem (float16 N(0, 1) features, a mask of 1..L
    leading ones), a function of (seed, stem) only; files already there are kept. Written atomically."""
    for stem in stems:
        path = Path(folder) / f"{stem}.npz"
        if path.exists():
            continue
        rng = np.random.default_rng(mix_seed(seed, "synthetic-caption", stem))
        valid = int(rng.integers(1, tokens + 1))
        save_npz(path, {FEATURES_KEY: rng.standard_normal((1, tokens, channels)).astype(np.float16),
                        MASK_KEY: (np.arange(tokens) < valid).astype(np.int64)[None]})
    return Path(folder)


# ----------------------------------------------------------------------------------------------------------------
# What the evals call: a config's caption Dataset -> a CaptionFolder
# ----------------------------------------------------------------------------------------------------------------

def named_folder(ds: Dataset, ctx: Any) -> Path:
    """The folder of the named set ``ds`` under ``--data``; Unavailable (the row says where to put it) when
    ``--data`` does not name it."""
    option = ctx.options.get("data") or DataOption()
    path = option.resolve(ds)
    if path is None:
        where = f"no {ds.name} folder at {Path(option.root) / ds.name}" if option.root else f"no {ds.name} folder given"
        raise Unavailable(f"{where} ({FOLDER_SETS[ds.name]}); pass --data {ds.name}=PATH or --data D holding "
                          f"D/{ds.name}/ (it cannot be computed or downloaded here)")
    return path


def caption_folder(ds: Dataset, ctx: Any, tokens: int, channels: int, stems: Sequence[str] | None = None,
                   first: int | None = None) -> CaptionFolder:
    """Caption features named by a config (``TrainDiffusionConfig.captions``, ``GenerateConfig.prompts``):
    ``SYNTHETIC`` (smoke only) written under ``runs/_cache`` for the stems (or ``first`` prompts), then read; a
    folder set from ``--data``. ``stems`` / ``first`` as ``open_caption_folder``."""
    if ds.kind == "synthetic":
        if not ctx.scale.random_init:
            raise UsageError("synthetic caption features are random, not text: a smoke check only; give a caption "
                             "features folder (e.g. folder('mjhq-30k-t5'))")
        stems = list(stems) if stems is not None else [f"{i:05d}" for i in range(first or 0)]
        cache = Path(ctx.run_dir).parent / "_cache" / f"captions-synthetic-v{SYNTHETIC_VERSION}-{tokens}x{channels}"
        return open_caption_folder(write_synthetic_folder(cache, stems, tokens, channels), tokens, channels, stems)
    if ds.kind != "folder":
        raise UsageError(f"caption features {ds}: use a caption features folder (folder('mjhq-30k-t5')) or SYNTHETIC")
    return open_caption_folder(named_folder(ds, ctx), tokens, channels, stems, first)
