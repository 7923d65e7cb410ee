"""Any autoencoder as the reconstruction protocol sees it: ``encode`` / ``decode`` on [-1, 1] images, its spatial
factor and latent channels, a description, and a digest of its weights (the run id of ``eval-ae`` depends on it).

A model is given as one of:

- a registered name (``python -m bench models``) whose official files are in ``--weights FOLDER``;
- a ``.safetensors`` file written by this harness (``models.save``; e.g. a ``train-ae`` run's ``ckpt/model.safetensors``);
- a diffusers folder holding ``config.json`` and weights: ``AutoencoderKL`` (any latent channels, 4 as SD, 16 as
  SD3 / FLUX) or ``AutoencoderDC``; the class is read from ``config.json`` (``pip install -e ".[diffusers]"``);
- ``module:function``: a factory returning an object with ``encode(x)`` and ``decode(z)`` (a tensor, or diffusers'
  output objects); its ``spatial_compression`` / ``latent_channels`` are read when present, else measured.

Every failure is a one-line ``UsageError`` naming the fix.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

import models
from bench.errors import UsageError
from bench.evals.shards import state_digest

Kind = Literal["registered", "harness-file", "diffusers", "factory"]
DIFFUSERS_CLASSES = ("AutoencoderKL", "AutoencoderDC")


@dataclass(frozen=True)
class Source:
    """Where an autoencoder comes from: what the user typed, what it is, and a digest of its weights."""

    spec: str     # as given on the command line
    kind: Kind
    digest: str   # sha256[:16] of the weights (folder: of every file in it; factory: of the built state)
    f: int = 0    # spatial factor, known before any run (0: not read)


def _digest_files(files: list[Path], root: Path) -> str:
    """sha256[:16] over each file's path under ``root`` and its content; a ``.safetensors`` file's header is hashed
    with sorted keys, since safetensors writes its metadata in an order that varies between processes."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode())
        with f.open("rb") as fh:
            if f.suffix == ".safetensors":
                h.update(_canonical_header(fh))
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _canonical_header(fh: Any) -> bytes:
    """A safetensors file's JSON header with sorted keys; leaves ``fh`` at the start of the tensor data."""
    size = int.from_bytes(fh.read(8), "little")
    try:
        header = json.loads(fh.read(size))
    except ValueError:
        raise UsageError(f"{fh.name} is not a safetensors file (its header is not JSON); give a file written by "
                         f"safetensors") from None
    return json.dumps(header, sort_keys=True).encode()


def _diffusers_class(folder: Path) -> str:
    try:
        name = json.loads((folder / "config.json").read_text()).get("_class_name", "")
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder}/config.json cannot be read ({type(e).__name__}); give a diffusers model folder "
                         f"(config.json and weights)") from None
    if name not in DIFFUSERS_CLASSES:
        raise UsageError(f"{folder} holds a diffusers {name or 'model of unknown class'}; supported: "
                         f"{', '.join(DIFFUSERS_CLASSES)}")
    return name


def _diffusers_f(folder: Path) -> int:
    """The spatial factor of a diffusers autoencoder, from its config.json: one halving per block after the first."""
    cfg = json.loads((folder / "config.json").read_text())
    blocks = cfg.get("block_out_channels") if _diffusers_class(folder) == "AutoencoderKL" \
        else cfg.get("encoder_block_out_channels")
    return 2 ** (len(blocks) - 1)


def _load_harness_file(path: str) -> nn.Module:
    try:
        return models.load(path)
    except (ValueError, OSError, KeyError) as e:
        raise UsageError(f"{path} is not a model file of this harness ({e}); give a file written by models.save (a "
                         f"train-ae run's ckpt/model.safetensors) or a diffusers folder") from None


def _shown(path: Path) -> str:
    """A path as recorded in run configs: relative to the working directory when inside it (no machine paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def resolve(spec: str, weights: str | None = None) -> Source:
    """Classify ``spec`` and digest its weights, before anything is loaded; a one-line UsageError otherwise."""
    path = Path(spec).expanduser()
    registered = {m.name for m in models.list_models()}
    if spec in registered:
        if not weights:
            raise UsageError(f"{spec} needs its weights: pass --weights FOLDER (holding {spec}/ or its files)")
        root = Path(weights).expanduser()
        own = root / spec if (root / spec).exists() else root
        return Source(spec, "registered", _digest_files([f for f in own.rglob("*") if f.is_file()], own),
                      models.zoo.info(spec).spatial_compression)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"{spec} is a folder without config.json: not a diffusers model; give a diffusers "
                             f"AutoencoderKL / AutoencoderDC folder, a .safetensors file of this harness, a "
                             f"registered name or module:function")
        files = [f for f in path.rglob("*") if f.is_file() and f.suffix in (".json", ".safetensors", ".bin")]
        return Source(_shown(path), "diffusers", _digest_files(files, path), _diffusers_f(path))
    if path.is_file():
        f = _load_harness_file(str(path)).spatial_compression
        return Source(_shown(path), "harness-file", _digest_files([path], path.parent), f)
    if ":" in spec and not spec.startswith(("/", ".")):
        ae = _load_factory(spec)
        return Source(spec, "factory", _factory_digest(ae), ae.spatial_compression)
    raise UsageError(f"{spec!r} is not a registered name, a file, a diffusers folder or module:function; see "
                     f"`python -m bench models` for names")


class Autoencoder(nn.Module):
    """One interface over every source: ``encode`` / ``decode`` tensors, ``forward`` = decode(encode(x))."""

    def __init__(self, inner: Any, f: int, c: int, description: str):
        super().__init__()
        self.inner = inner if isinstance(inner, nn.Module) else _Holder(inner)
        self.spatial_compression, self.latent_channels, self.description = f, c, description

    @property
    def _target(self) -> Any:
        return self.inner.obj if isinstance(self.inner, _Holder) else self.inner

    @property
    def scaling_factor(self) -> float | None:
        """The latent scale the model declares (``scaling_factor``, or a diffusers ``config.scaling_factor``), or
        None: diffusion on its latents then uses 1 / RMS of the latents (``latent_scale="unit-rms"``)."""
        t = self._target
        config = getattr(t, "config", None)
        value = config.get("scaling_factor") if isinstance(config, dict) else getattr(t, "scaling_factor", None)
        return float(value) if isinstance(value, (int, float)) else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return as_tensor(self._target.encode(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return as_tensor(self._target.decode(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class _Holder(nn.Module):
    """Keeps a non-module model (a factory's plain object) inside the wrapper."""

    def __init__(self, obj: Any):
        super().__init__()
        self.obj = obj


def as_tensor(out: Any) -> torch.Tensor:
    """A latent or image from what an encoder / decoder returned: a tensor, diffusers' ``latent_dist`` (its mode,
    the posterior mean, as a reconstruction is scored), ``.latent``, ``.sample``, or the first of a tuple."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "latent_dist"):
        return out.latent_dist.mode()
    for name in ("latent", "sample", "latents"):
        if isinstance(getattr(out, name, None), torch.Tensor):
            return getattr(out, name)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise UsageError(f"the autoencoder returned {type(out).__name__}; encode/decode must return a tensor (or "
                     f"diffusers' output objects)")


def _measured_fc(target: Any) -> tuple[int, int]:
    """Spatial factor and latent channels by encoding one 256-px zero image."""
    with torch.no_grad():
        z = as_tensor(target.encode(torch.zeros(1, 3, 256, 256)))
    if z.dim() != 4 or 256 % z.shape[-1]:
        raise UsageError(f"the autoencoder's latent for a 256-px image has shape {tuple(z.shape)}; expected (1, c, "
                         f"256/f, 256/f)")
    return 256 // z.shape[-1], int(z.shape[1])


def _load_diffusers(folder: Path) -> Autoencoder:
    name = _diffusers_class(folder)
    try:
        import diffusers
    except ImportError:
        raise UsageError(f"{folder} is a diffusers {name}: install the extra with pip install -e \".[diffusers]\"") \
            from None
    model = getattr(diffusers, name).from_pretrained(str(folder), low_cpu_mem_usage=False).eval()
    f, c = _diffusers_f(folder), int(model.config.latent_channels)
    return Autoencoder(model, f, c, f"diffusers {name} ({folder.name}, f{f}c{c})")


def _load_factory(spec: str) -> Autoencoder:
    module, _, func = spec.rpartition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a module beside the user's working directory
    try:
        obj = getattr(importlib.import_module(module), func)()
    except (ImportError, AttributeError) as e:
        raise UsageError(f"{spec}: cannot import {func} from {module} ({e}); give module:function of a factory "
                         f"returning an object with encode and decode") from None
    if not (callable(getattr(obj, "encode", None)) and callable(getattr(obj, "decode", None))):
        raise UsageError(f"{spec} returned {type(obj).__name__}, which has no encode/decode methods")
    if isinstance(obj, nn.Module):
        obj.eval()
    f, c = getattr(obj, "spatial_compression", None), getattr(obj, "latent_channels", None)
    if f is None or c is None:
        f, c = _measured_fc(obj)
    return Autoencoder(obj, int(f), int(c), f"{spec} ({type(obj).__name__}, f{f}c{c})")


def _factory_digest(ae: Autoencoder) -> str:
    """A factory's model is named by its built weights (a module), or else by its source file."""
    if any(True for _ in ae.parameters()):
        return state_digest(ae)
    module = sys.modules[type(ae._target).__module__]
    return _digest_files([Path(module.__file__)], Path(module.__file__).parent)


def load(source: Source, weights: str | None = None) -> tuple[Autoencoder, str]:
    """The autoencoder of ``source`` and the digest of the weights actually loaded."""
    if source.kind == "diffusers":
        return _load_diffusers(Path(source.spec)), source.digest
    if source.kind == "factory":
        ae = _load_factory(source.spec)
        return ae, _factory_digest(ae)
    if source.kind == "harness-file":
        inner = _load_harness_file(source.spec)
        desc = f"{getattr(inner, 'name', 'model')} from {Path(source.spec).name}"
    else:
        root = Path(weights).expanduser()
        inner = models.load_pretrained(source.spec, root / source.spec if (root / source.spec).exists() else root)
        desc = f"{source.spec} (released weights)"
    f, c = inner.spatial_compression, inner.latent_channels
    return Autoencoder(inner, f, c, f"{desc}, f{f}c{c}"), source.digest
