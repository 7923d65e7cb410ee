"""Image data for training and evaluating autoencoders, offline.

Three sources, one interface (``len(ds)``, ``ds[i]`` → float (3, r, r) in [-1, 1], ``ds.get_uint8(i)`` → uint8
(3, r, r) or None when the file is unreadable, ``ds.manifest``, ``ds.identity``):

- ``EmbeddedPhotos(split, resolution)``: the default data set of the small/smoke scales, built at run time from
  real photographs: those shipped inside installed packages (scikit-image's sample data, matplotlib's
  ``grace_hopper.jpg``; ``shared/reference/evaluation.md`` §10) and four GPL-2+ nature photographs committed in
  ``models/photos/`` (from Debian's ``mate-backgrounds``; licences and sources in ``models/photos/README.md``), which
  bring the held-out split to more than 256 crops at 128 px. Nothing is downloaded.
  Train and test are split **by source photo** (a photo is on one side only); the test side holds two portraits
  and a text image so that Fig. 7 can show faces and text. Each photo yields deterministic crops: the whole photo
  (short-side square crops along the long side) plus a grid of at most 4×4 squares of side r, 2r and 4r (native
  scale and 2×/4× downsampled), each unflipped and flipped; the list is shuffled with a fixed seed so that the
  first ``n_images`` are a varied mix. Crops are resized to r with the ADM rule (BOX halving while ≥ 2r, then
  BICUBIC), the crop the official evaluator uses.
- ``ImageFolderDataset(path, resolution)``: a ``--data`` folder (ImageNet val, FFHQ, ...), recursive, with the
  official ADM ``center_crop_arr`` (efficientvit ``DMCrop``). Unreadable files are skipped with one warning.
- ``SyntheticDataset(n, resolution)``: procedural shapes and textures for unit tests.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

# ----------------------------------------------------------------------------------------------------------------
# The embedded source photos
# ----------------------------------------------------------------------------------------------------------------


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle -> (left, right, disparity): left
    return load


PHOTOS = Path(__file__).with_name("photos")  # committed photographs (models/photos/README.md)


def _committed(file: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        with Image.open(PHOTOS / file) as im:
            return np.asarray(im.convert("RGB"))
    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook  # here, not at the top: ~0.5 s of matplotlib start-up that only this photo needs
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@dataclass(frozen=True)
class SourcePhoto:
    name: str
    split: str  # 'train' | 'test'
    load: Callable[[], np.ndarray]
    content: str  # what is in it (for figure captions)
    licence: str


# Read top to bottom: every photo of the embedded set and its side of the split.
SOURCES: tuple[SourcePhoto, ...] = (
    # held-out test photos: faces (Fig. 7), text (Fig. 7), a still life
    SourcePhoto("astronaut", "test", _skimage("astronaut"), "portrait (face)", "public domain (NASA)"),
    SourcePhoto("grace_hopper", "test", _grace_hopper, "portrait (face)", "not stated (presumably US Navy PD)"),
    SourcePhoto("text", "test", _skimage("text"), "printed text (grey)", "scikit-image sample, CC0"),
    SourcePhoto("coffee", "test", _skimage("coffee"), "cup of coffee", "CC0"),
    # held-out nature photographs (committed, models/photos/README.md): more held-out crops
    SourcePhoto("dune", "test", _committed("dune.jpg"), "dune grass and sea", "GPL-2+ (mate-backgrounds)"),
    SourcePhoto("ladybird", "test", _committed("ladybird.jpg"), "ladybird on flowers", "GPL-2+ (mate-backgrounds)"),
    SourcePhoto("raindrops", "test", _committed("raindrops.jpg"), "leaves with raindrops",
                "GPL-2+ (mate-backgrounds)"),
    SourcePhoto("garden", "test", _committed("garden.jpg"), "red flower", "GPL-2+ (mate-backgrounds)"),
    # training photos
    SourcePhoto("chelsea", "train", _skimage("chelsea"), "cat", "CC0"),
    SourcePhoto("rocket", "train", _skimage("rocket"), "rocket launch", "public domain (SpaceX)"),
    SourcePhoto("hubble_deep_field", "train", _skimage("hubble_deep_field"), "galaxies", "public domain (NASA)"),
    SourcePhoto("immunohistochemistry", "train", _skimage("immunohistochemistry"), "stained tissue",
                "no known restrictions"),
    SourcePhoto("retina", "train", _skimage("retina"), "retina fundus", "CC0"),
    SourcePhoto("stereo_motorcycle", "train", _skimage("stereo_motorcycle"), "motorcycle (left view)",
                "Middlebury 2014"),
    SourcePhoto("page", "train", _skimage("page"), "printed page (grey)", "scikit-image sample, CC0"),
    SourcePhoto("camera", "train", _skimage("camera"), "cameraman (grey)", "scikit-image sample, CC0"),
)
SPLITS = ("train", "test")


@cache
def load_source(name: str) -> np.ndarray:
    """Decoded (H, W, 3) uint8 photo, cached in memory (grey photos are replicated to RGB)."""
    src = {s.name: s for s in SOURCES}[name]
    img = np.asarray(src.load())
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def sources(split: str) -> tuple[SourcePhoto, ...]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return tuple(s for s in SOURCES if s.split == split)


# ----------------------------------------------------------------------------------------------------------------
# Resizing (ADM rules)
# ----------------------------------------------------------------------------------------------------------------


def adm_resize_square(img: Image.Image, resolution: int) -> Image.Image:
    """A square image to ``resolution``: BOX-halve while the side is ≥ 2·res, then BICUBIC (ADM, guided-diffusion)."""
    while min(img.size) >= 2 * resolution:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    return img.resize((resolution, resolution), resample=Image.BICUBIC)


def adm_center_crop(img: Image.Image, resolution: int) -> np.ndarray:
    """ADM ``center_crop_arr`` (efficientvit DMCrop): BOX-halve while short side ≥ 2·res, BICUBIC short side to res,
    centre crop res×res. Returns (res, res, 3) uint8."""
    while min(*img.size) >= 2 * resolution:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = resolution / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.asarray(img.convert("RGB"))
    top = (arr.shape[0] - resolution) // 2
    left = (arr.shape[1] - resolution) // 2
    return arr[top:top + resolution, left:left + resolution]


def _to_float(u: torch.Tensor) -> torch.Tensor:
    return u.float() / 127.5 - 1  # uint8 -> [-1, 1] (= ToTensor + Normalize(0.5, 0.5))


def _hwc_to_tensor(a: np.ndarray) -> torch.Tensor:
    # the transpose is done in numpy: a torch permute+contiguous per small image costs ~20 ms of thread start-up
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.uint8).transpose(2, 0, 1)))  # (3, H, W)


# ----------------------------------------------------------------------------------------------------------------
# Embedded photos: deterministic crops
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crop:
    """One image of the embedded set: a square ``box`` (left, top, right, bottom) of ``source``, maybe flipped."""

    source: str
    box: tuple[int, int, int, int]
    flip: bool


GRID_MAX = 4  # at most GRID_MAX × GRID_MAX crop positions per (photo, crop side)
CROP_SCALES = (1, 2, 4)  # crop sides r·m: native scale, 2× and 4× downsampled


def _positions(length: int, side: int, k: int) -> list[int]:
    if k <= 1 or length == side:
        return [(length - side) // 2]
    return sorted({round(i * (length - side) / (k - 1)) for i in range(k)})


def crop_plan(split: str, resolution: int, seed: int = 0) -> list[Crop]:
    """The crop list of a split at ``resolution``, in a fixed seeded order."""
    crops: list[Crop] = []
    for src in sources(split):
        h, w = load_source(src.name).shape[:2]
        short = min(h, w)
        sides = sorted({short} | {resolution * m for m in CROP_SCALES if resolution * m < short}, reverse=True)
        for side in sides:  # the whole-photo side: every square along the long side; smaller ones: a capped grid
            crops += _grid(src.name, h, w, side, GRID_MAX if side < short else max(h, w))
    return _shuffled(crops, seed)


def _grid(source: str, h: int, w: int, side: int, cap: int) -> list[Crop]:
    """About (h / side) × (w / side) squares of ``side``, at most ``cap`` per axis, spread over an h × w photo, each
    unflipped and flipped."""
    ny, nx = (min(cap, max(1, round(n / side))) for n in (h, w))
    return [Crop(source, (left, top, left + side, top + side), flip)
            for top in _positions(h, side, ny) for left in _positions(w, side, nx) for flip in (False, True)]


def _shuffled(crops: list[Crop], seed: int) -> list[Crop]:
    order = np.random.default_rng(seed).permutation(len(crops))
    return [crops[i] for i in order]


# The held-out *regions* set (Figure 3b): one list of boxes, rendered at any resolution up to the box
# side, so that the training-resolution and the 4x-resolution evaluations see the same source regions, never an
# upscaled one. Boxes of REGION_SIDE source pixels on a grid of at most GRID_MAX x GRID_MAX per held-out photo whose
# short side holds one (the 172-px `text` photo does not), each unflipped and flipped.
REGIONS = "test-regions"
REGION_SIDE = 256


def region_plan(seed: int = 0) -> list[Crop]:
    """The boxes of the held-out regions set, in a fixed seeded order; the same at every resolution."""
    crops: list[Crop] = []
    for src in sources("test"):
        h, w = load_source(src.name).shape[:2]
        if min(h, w) >= REGION_SIDE:
            crops += _grid(src.name, h, w, REGION_SIDE, GRID_MAX)
    return _shuffled(crops, seed)


@lru_cache(maxsize=32)
def _render(split: str, resolution: int, seed: int) -> tuple[torch.Tensor, tuple[Crop, ...]]:
    if split == REGIONS and resolution > REGION_SIDE:
        raise ValueError(f"the {REGIONS} set has {REGION_SIDE}-px boxes: {resolution} px would upscale them; "
                         f"use <= {REGION_SIDE} px")
    plan = region_plan(seed) if split == REGIONS else crop_plan(split, resolution, seed)
    images = np.empty((len(plan), 3, resolution, resolution), dtype=np.uint8)
    pil_cache: dict[str, Image.Image] = {}
    for i, c in enumerate(plan):
        if c.source not in pil_cache:
            pil_cache[c.source] = Image.fromarray(load_source(c.source))
        a = np.asarray(adm_resize_square(pil_cache[c.source].crop(c.box), resolution))  # (r, r, 3)
        images[i] = (a[:, ::-1] if c.flip else a).transpose(2, 0, 1)
    return torch.from_numpy(images), tuple(plan)  # (N, 3, r, r) uint8


class _InMemory(torch.utils.data.Dataset):
    """A data set held as one uint8 tensor ``self.images`` (N, 3, r, r)."""

    images: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return _to_float(self.images[i])  # (3, r, r) in [-1, 1]

    def get_uint8(self, i: int) -> torch.Tensor:
        return self.images[i]


class EmbeddedPhotos(_InMemory):
    """Deterministic crops of the embedded photos of one split at ``resolution`` (see the module docstring).

    ``n_images`` keeps the first n of the seeded order (raises if the split has fewer). ``split`` may also be
    ``REGIONS`` (``"test-regions"``): the held-out boxes of ``region_plan``, the same boxes at every resolution up to
    ``REGION_SIDE``.
    """

    def __init__(self, split: str = "train", resolution: int = 64, n_images: int | None = None, seed: int = 0):
        if resolution < 8:
            raise ValueError(f"resolution must be >= 8 px, got {resolution}")
        images, plan = _render(split, resolution, seed)
        if n_images is not None:
            if n_images > len(plan):
                raise ValueError(f"the embedded {split} split has {len(plan)} crops at {resolution} px, "
                                 f"{n_images} requested")
            images, plan = images[:n_images], plan[:n_images]
        self.split, self.resolution, self.seed = split, resolution, seed
        self.images = images  # (N, 3, r, r) uint8
        self.plan = plan

    @property
    def manifest(self) -> list[dict]:
        return [{"index": i, **asdict(c)} for i, c in enumerate(self.plan)]

    @property
    def identity(self) -> str:
        """Content hash of the served images + manifest (keys cached reference statistics)."""
        h = hashlib.sha256(json.dumps(self.manifest).encode())
        h.update(self.images.numpy().tobytes())
        return h.hexdigest()[:16]

    @property
    def regions_id(self) -> str:
        """Hash of the manifest alone (sources, boxes, flips; no pixels): equal for two resolutions of the regions
        set, so a claim may pair their images (Figure 3b)."""
        return hashlib.sha256(json.dumps(self.manifest).encode()).hexdigest()[:16]

    @property
    def description(self) -> str:
        photos = len({c.source for c in self.plan})
        return f"embedded-{self.split} ({len(self)} crops of {photos} photos, {self.resolution} px)"


# ----------------------------------------------------------------------------------------------------------------
# A user folder (--data PATH)
# ----------------------------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def image_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursive, by suffix in any case), sorted: a folder's images in set order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_identity(root: str | Path) -> str:
    """The identity of an image folder as a whole (every image file's name, size and mtime): a changed folder gives
    a new run id."""
    root = Path(root).expanduser()
    return files_identity(root, image_files(root), "")


def files_identity(root: Path, files: list[Path], salt: str) -> str:
    """sha256[:16] of ``salt`` and each file's path relative to ``root``, size and mtime: the identity of a large
    folder (image folders, caption-feature folders) without reading its contents."""
    h = hashlib.sha256(salt.encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class DataFolderError(ValueError):
    """A ``--data`` folder that cannot serve images (missing, empty, nothing readable); the message names the fix.

    Defined here, not in ``bench.errors``: the model layer never imports the harness. The harness turns it into
    its one-line usage error.
    """


class ImageFolderDataset(torch.utils.data.Dataset):
    """All images under ``path`` (recursive; jpg/jpeg/png/webp in any case), ADM centre crop at ``resolution``.

    Files whose header cannot be read are dropped at construction; files that fail to decode later are skipped
    (``get_uint8`` returns None). Both are counted in ``skipped`` and reported by one warning.
    """

    def __init__(self, path: str | Path, resolution: int, n_images: int | None = None):
        self.root = Path(path).expanduser()
        self.resolution = resolution
        if not self.root.is_dir():
            raise DataFolderError(f"--data {self.root} is not a folder; pass a folder of images (e.g. ImageNet val)")
        files = image_files(self.root)
        if not files:
            raise DataFolderError(f"--data {self.root} holds no .jpg/.jpeg/.png/.webp images; pass a folder of images")
        self.skipped: list[str] = []
        readable = []
        for p in files:
            if n_images is not None and len(readable) == n_images:
                break  # the first n readable files (sorted order) are the set
            try:
                with Image.open(p) as im:
                    im.size  # noqa: B018 (reads the header only)
                readable.append(p)
            except Exception:  # noqa: BLE001 - PIL raises many kinds (UnidentifiedImageError, OSError, SyntaxError, ...)
                self.skipped.append(str(p.relative_to(self.root)))
        if not readable:
            raise DataFolderError(f"--data {self.root}: none of its {len(files)} image files can be read")
        self.files = readable
        self._warned = False
        self._warn_skipped()

    def _warn_skipped(self) -> None:
        if self.skipped and not self._warned:
            warnings.warn(f"{len(self.skipped)} unreadable image(s) under {self.root} skipped "
                          f"(first: {self.skipped[0]})", stacklevel=3)
            self._warned = True

    def __len__(self) -> int:
        return len(self.files)

    def get_uint8(self, i: int) -> torch.Tensor | None:
        try:
            with Image.open(self.files[i]) as im:
                arr = adm_center_crop(im.convert("RGB"), self.resolution)
        except Exception:  # noqa: BLE001 - a corrupt file is skipped, never fatal
            self.skipped.append(str(self.files[i].relative_to(self.root)))
            self._warn_skipped()
            return None
        return _hwc_to_tensor(arr)

    def __getitem__(self, i: int) -> torch.Tensor:
        for j in range(len(self.files)):  # an unreadable file is replaced by the next readable one (training)
            u = self.get_uint8((i + j) % len(self.files))
            if u is not None:
                return _to_float(u)
        raise RuntimeError(f"no readable image under {self.root}")

    @property
    def manifest(self) -> list[dict]:
        return [{"index": i, "file": str(p.relative_to(self.root))} for i, p in enumerate(self.files)]

    @property
    def identity(self) -> str:
        """Hash of relative names, sizes and mtimes (not contents: hashing 50k files would take minutes)."""
        return files_identity(self.root, self.files, str(self.resolution))

    @property
    def description(self) -> str:
        return f"folder ({len(self)} images, ADM centre crop {self.resolution} px)"


# ----------------------------------------------------------------------------------------------------------------
# Procedural images for unit tests
# ----------------------------------------------------------------------------------------------------------------


def synthetic_images(n: int, resolution: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, r, r) uint8 images: a colour gradient, a sinusoidal texture, a disc and a rectangle, all seeded."""
    g = torch.Generator().manual_seed(seed)
    r = resolution
    yy, xx = torch.meshgrid(torch.linspace(0, 1, r), torch.linspace(0, 1, r), indexing="ij")
    out = torch.empty(n, 3, r, r)
    for i in range(n):
        p = torch.rand(16, generator=g)
        c0, c1 = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
        img = c0 * (1 - xx) + c1 * yy  # (3, r, r) gradient
        img = img + 0.15 * torch.sin(2 * torch.pi * (4 + 12 * p[0]) * (xx * p[1] + yy * (1 - p[1])))
        disc = ((xx - p[2]) ** 2 + (yy - p[3]) ** 2) < (0.05 + 0.2 * p[4]) ** 2
        img = torch.where(disc, torch.rand(3, 1, 1, generator=g).expand(3, r, r), img)
        rect = (xx > p[5]) & (xx < p[5] + 0.3 * p[6]) & (yy > p[7]) & (yy < p[7] + 0.3 * p[8])
        img = torch.where(rect, torch.rand(3, 1, 1, generator=g).expand(3, r, r), img)
        out[i] = img
    return (out.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


class SyntheticDataset(_InMemory):
    """``synthetic_images`` behind the dataset interface."""

    def __init__(self, n: int = 16, resolution: int = 32, seed: int = 0):
        self.images = synthetic_images(n, resolution, seed)
        self.resolution, self.seed = resolution, seed

    @property
    def manifest(self) -> list[dict]:
        return [{"index": i, "synthetic_seed": self.seed} for i in range(len(self))]

    @property
    def identity(self) -> str:
        return hashlib.sha256(self.images.numpy().tobytes()).hexdigest()[:16]

    @property
    def description(self) -> str:
        return f"synthetic ({len(self)} images, {self.resolution} px)"


# ----------------------------------------------------------------------------------------------------------------
# Showcase crops of the held-out photos (Fig. 7: faces and small text)
# ----------------------------------------------------------------------------------------------------------------

# name -> (test photo, square box (left, top, right, bottom) in photo pixels), chosen by eye
SHOWCASE: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "astronaut-face": ("astronaut", (134, 0, 326, 192)),
    "hopper-face": ("grace_hopper", (144, 96, 368, 320)),
    "hopper-nametag": ("grace_hopper", (60, 436, 188, 564)),  # small printed text on a name tag
    "text": ("text", (100, 0, 272, 172)),  # handwriting-like printed formulae
    "astronaut-badge": ("astronaut", (108, 318, 236, 446)),  # mission patch with small lettering
}


def showcase_images(resolution: int) -> tuple[list[str], torch.Tensor]:
    """The Fig. 7 crops at ``resolution``: (names, (K, 3, r, r) uint8). All come from the held-out test photos."""
    names, out = [], []
    for name, (src, box) in SHOWCASE.items():
        assert {s.name: s for s in SOURCES}[src].split == "test", f"showcase crop {name} must be held out"
        img = adm_resize_square(Image.fromarray(load_source(src)).crop(box), resolution)
        names.append(name)
        out.append(_hwc_to_tensor(np.asarray(img)))
    return names, torch.stack(out)
