"""Checkpoints: official weights in (efficientvit and diffusers layouts), our own safetensors format in and out.

- `load_pretrained(name, path)`: the efficientvit layout (a folder with `model.safetensors`, or a `.pt/.pth/.bin/.ckpt`
  whose state dict may be nested under `model` / `module` / `state_dict`), and the diffusers layout (`config.json` +
  `diffusion_pytorch_model.safetensors`) of `AutoencoderDC` and `AutoencoderKL`. Our DC-AE parameter names *are*
  the efficientvit names, so that layout loads as is; diffusers keys are converted (reference §6.3).
- `save(model, path)` / `load(path)`: one safetensors file; the family, registry name and config (JSON) travel in the
  safetensors metadata, so `load` rebuilds the module without being told what it is.
- `load_released_diffusion(name, folder)`: the released DC-AE latent-diffusion models (U-ViT, DiT; names in
  `models.backbones.RELEASED_DIFFUSION`), from the hub file (`diffusion_model.*` + `autoencoder.*`) or an efficientvit
  trainer checkpoint (EMA weights), into `models/uvit.py` / `models/dit.py` (reference/generation.md §4).
- Key conversion between layouts lives here, and only here (the model files hold architecture only): DC-AE
  efficientvit (= ours) <-> diffusers `AutoencoderDC`; SD-VAE ours <-> diffusers `AutoencoderKL` <-> CompVis/LDM;
  plus the diffusers constructor arguments of the same architectures (`diffusers_dc_kwargs`, `diffusers_kl_kwargs`),
  which the parity tests use. Nothing here imports diffusers.

Loading is strict: missing keys, unexpected keys and shape mismatches raise one `ValueError` naming the model, the
file and the first offending keys. Pickles are read with `torch.load(weights_only=True)` only.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import typing
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from models import zoo
from models.backbones import (
    BACKBONES,
    RELEASED_DIFFUSION,
    UNSUPPORTED_RELEASED_DIFFUSION,
    ReleasedDiffusion,
    build_backbone,
)
from models.dc_ae import DCAEConfig
from models.dit import DiT, DiTConfig, sincos_2d
from models.io import atomic_write_bytes
from models.sd_vae import SDVAEConfig

FORMAT = "dcae-bench/1"  # our safetensors metadata tag; bump if the metadata schema changes
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
NESTING_KEYS = ("state_dict", "model", "module", "model_state_dict")  # wrappers of the actual state dict

# ----------------------------------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------------------------------


def _read_safetensors(path: Path, read: typing.Callable[[str], typing.Any]):
    """``read(path)`` of a safetensors file whose header is checked first: an 8-byte little-endian header length,
    then that much JSON, then the data. A missing, truncated or foreign file raises one ValueError."""
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if size < 10 or int.from_bytes(head[:8], "little") > size - 8 or head[8:9] != b"{":
        raise ValueError(f"{path}: not a safetensors file (bad header; truncated, empty, or another format?)")
    try:
        return read(str(path))
    except Exception as e:  # noqa: BLE001 (safetensors raises its own error types for truncated data)
        raise ValueError(f"{path}: not a valid safetensors file (truncated or corrupt?): {e}") from None


def _safetensors_metadata(file: str) -> dict[str, str]:
    with safe_open(file, framework="pt") as fh:
        return fh.metadata() or {}


def _torch_load_weights_only(path: Path):
    """A pickle read with `weights_only=True`: never unpickles arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (unpickling, zip and weights-only errors have no common type)
        raise ValueError(f"{path}: cannot read as a weights-only torch pickle: {e}") from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of one file: safetensors, or a pickle read with `weights_only=True`; nested dicts are unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, load_file)
    if path.suffix in PICKLE_SUFFIXES:
        obj = _torch_load_weights_only(path)
        while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in NESTING_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                raise ValueError(f"{path}: no state dict found (top-level keys: {list(obj)[:8]})")
            obj = inner
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    raise ValueError(f"{path}: unknown checkpoint type {path.suffix!r} (expected .safetensors or {PICKLE_SUFFIXES})")


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str = "") -> nn.Module:
    """Load `state_dict` into `model`, or raise one ValueError listing the first missing / unexpected / mis-shaped keys.

    Floating tensors are cast to the model's dtype. A model on the meta device gets the tensors assigned (no copy).
    """
    name = getattr(model, "name", type(model).__name__)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f"{k} {tuple(state_dict[k].shape)} vs expected {tuple(v.shape)}"
                  for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems = [f"{len(keys)} {what} (first: {', '.join(keys[:5])})"
                for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("shape mismatches", mismatched)) if keys]
    if problems:
        raise ValueError(f"{name}: weights{' in ' + source if source else ''} do not match the architecture: "
                         + "; ".join(problems))
    cast = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(cast, strict=True, assign=on_meta)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# DC-AE: efficientvit (= ours) <-> diffusers AutoencoderDC (reference §6.3)
# ----------------------------------------------------------------------------------------------------------------------

# Ordered substring replacements of the reference's mapping table (rows 1-11, 13-16, 18); rows 12 and 17 depend on
# whether stage 0 is empty (diffusers then wraps conv_in / conv_out in a DCDown/UpBlock2d) and are applied in code.
_EV_TO_DF = (
    ("main.", ""),
    ("op_list.", ""),
    ("context_module", "attn"),
    ("local_module", "conv_out"),
    ("depth_conv.conv", "conv_depth"),
    ("inverted_conv.conv", "conv_inverted"),
    ("point_conv.conv", "conv_point"),
    ("point_conv.norm", "norm"),
    ("conv.conv.", "conv."),
    ("conv1.conv", "conv1"),
    ("conv2.conv", "conv2"),
    ("conv2.norm", "norm"),
    ("proj.norm", "norm_out"),
    ("encoder.project_out.0.conv", "encoder.conv_out"),
    ("encoder.stages", "encoder.down_blocks"),
    ("decoder.project_in.conv", "decoder.conv_in"),
    ("decoder.project_out.0", "decoder.norm_out"),
    ("decoder.stages", "decoder.up_blocks"),
)


def convert_ours_to_diffusers_dc(state_dict: dict[str, torch.Tensor], config: DCAEConfig) -> dict[str, torch.Tensor]:
    """efficientvit/our DC-AE keys -> diffusers `AutoencoderDC` keys (also the EV -> diffusers conversion)."""
    enc_wrapped, dec_wrapped = config.encoder_depths[0] == 0, config.decoder_depths[0] == 0
    out = {}
    for key, t in state_dict.items():
        k = re.sub(r"aggreg\.(\d+)\.0", r"to_qkv_multiscale.\1.proj_in", key)  # row 5 (one per scale)
        k = re.sub(r"aggreg\.(\d+)\.1", r"to_qkv_multiscale.\1.proj_out", k)
        for old, new in _EV_TO_DF:
            k = k.replace(old, new)
        k = k.replace("encoder.project_in.conv", "encoder.conv_in.conv" if enc_wrapped else "encoder.conv_in")
        k = k.replace("decoder.project_out.2.conv", "decoder.conv_out.conv" if dec_wrapped else "decoder.conv_out")
        if k.endswith("attn.qkv.conv.weight"):  # T1: fused (3C, C, 1, 1) -> to_q / to_k / to_v thirds (Linear)
            for part, w in zip(("to_q", "to_k", "to_v"), t.flatten(1).chunk(3, dim=0)):
                out[k.replace("qkv.conv.weight", f"{part}.weight")] = w.contiguous()
        elif k.endswith("attn.proj.conv.weight"):  # T2: 1x1 conv -> Linear
            out[k.replace("proj.conv.weight", "to_out.weight")] = t.flatten(1)
        else:
            out[k] = t
    return out


# diffusers block-relative name -> ours, for the blocks inside down_blocks / up_blocks (resamplers handled apart).
_DF_BLOCK_TO_EV = (
    (r"conv1\.(.+)", r"main.conv1.conv.\1"),
    (r"conv2\.(.+)", r"main.conv2.conv.\1"),
    (r"norm\.(.+)", r"main.conv2.norm.\1"),
    (r"attn\.to_out\.weight", r"context_module.main.proj.conv.weight"),
    (r"attn\.norm_out\.(.+)", r"context_module.main.proj.norm.\1"),
    (r"attn\.to_qkv_multiscale\.(\d+)\.proj_in\.(.+)", r"context_module.main.aggreg.\1.0.\2"),
    (r"attn\.to_qkv_multiscale\.(\d+)\.proj_out\.(.+)", r"context_module.main.aggreg.\1.1.\2"),
    (r"conv_out\.conv_inverted\.(.+)", r"local_module.main.inverted_conv.conv.\1"),
    (r"conv_out\.conv_depth\.(.+)", r"local_module.main.depth_conv.conv.\1"),
    (r"conv_out\.conv_point\.(.+)", r"local_module.main.point_conv.conv.\1"),
    (r"conv_out\.norm\.(.+)", r"local_module.main.point_conv.norm.\1"),
)


def convert_diffusers_dc_to_ours(state_dict: dict[str, torch.Tensor], config: DCAEConfig) -> dict[str, torch.Tensor]:
    """diffusers `AutoencoderDC` keys -> ours (= efficientvit). Keys it does not know are kept, so that strict loading
    reports them as unexpected instead of dropping them silently."""
    pixel = config.resampling == "pixel_shuffle"
    ev_in_wrapped = config.encoder_depths[0] == 0 and pixel  # PixelUnshuffleConv -> `.conv.conv`
    ev_out_wrapped = config.decoder_depths[0] == 0  # both upsamplers wrap their ConvLayer
    ends = (
        (r"encoder\.conv_in\.(?:conv\.)?(\w+)", "encoder.project_in.conv." + ("conv." if ev_in_wrapped else "")),
        (r"encoder\.conv_out\.(\w+)", "encoder.project_out.main.op_list.0.conv."),
        (r"decoder\.conv_in\.(\w+)", "decoder.project_in.main.conv."),
        (r"decoder\.norm_out\.(\w+)", "decoder.project_out.op_list.0."),
        (r"decoder\.conv_out\.(?:conv\.)?(\w+)", "decoder.project_out.op_list.2.conv." + ("conv." if ev_out_wrapped else "")),
    )
    out, qkv = {}, {}
    for key, t in state_dict.items():
        new = _convert_df_key(key, ends, pixel)
        m = re.fullmatch(r"(.+)\.attn\.to_([qkv])\.weight", key)
        if new is None and m:  # T1 reversed: gather the thirds, fuse below
            qkv.setdefault(m[1], {})[m[2]] = t
            continue
        if key.endswith("attn.to_out.weight"):  # T2 reversed: Linear -> 1x1 conv
            t = t[:, :, None, None]
        out[new if new is not None else key] = t
    for block, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:  # incomplete: keep them so strict loading names them
            out.update({f"{block}.attn.to_{p}.weight": w for p, w in parts.items()})
            continue
        ev_block = _convert_df_key(f"{block}.attn.to_out.weight", ends, pixel).rsplit(".proj.", 1)[0]
        out[f"{ev_block}.qkv.conv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]])[:, :, None, None]
    return out


def _convert_df_key(key: str, ends, pixel: bool) -> str | None:
    for pattern, prefix in ends:
        if m := re.fullmatch(pattern, key):
            return prefix + m[1]
    m = re.fullmatch(r"(encoder|decoder)\.(?:down_blocks|up_blocks)\.(\d+)\.(\d+)\.(.+)", key)
    if not m:
        return None
    side, stage, index, rest = m.groups()
    prefix = f"{side}.stages.{stage}.op_list.{index}."
    if rm := re.fullmatch(r"conv\.(\w+)", rest):  # a resampler: EV wraps all but the stride-2 down conv
        wrapped = side == "decoder" or pixel
        return prefix + "main.conv." + ("conv." if wrapped else "") + rm[1]
    for pattern, replacement in _DF_BLOCK_TO_EV:
        if re.fullmatch(pattern, rest):
            return prefix + re.sub(pattern, replacement, rest)
    return None


def diffusers_dc_kwargs(config: DCAEConfig) -> dict:
    """`AutoencoderDC(**kwargs)` arguments of the same architecture (reference §5), e.g. for parity tests."""
    if not config.residual_autoencoding:
        raise ValueError("diffusers AutoencoderDC always has the stage shortcuts; residual_autoencoding=False has "
                         "no diffusers equivalent")
    if config.glu_expand != 4:
        raise ValueError("diffusers AutoencoderDC fixes the GLUMBConv expansion at 4")
    n = len(config.widths)
    blocks = tuple("ResBlock" if i < config.res_stages else "EfficientViTBlock" for i in range(n))
    scales = tuple(() if i < config.res_stages else tuple(config.attention_multiscales) for i in range(n))
    bn = config.decoder_batchnorm_stages
    pixel = config.resampling == "pixel_shuffle"
    return dict(  # noqa: C408 (reads like the constructor call)
        in_channels=config.in_channels,
        latent_channels=config.latent_channels,
        attention_head_dim=config.head_dim,
        encoder_block_types=blocks,
        decoder_block_types=blocks,
        encoder_block_out_channels=tuple(config.widths),
        decoder_block_out_channels=tuple(config.widths),
        encoder_layers_per_block=tuple(config.encoder_depths),
        decoder_layers_per_block=tuple(config.decoder_depths),
        encoder_qkv_multiscales=scales,
        decoder_qkv_multiscales=scales,
        upsample_block_type="pixel_shuffle" if pixel else "interpolate",
        downsample_block_type="pixel_unshuffle" if pixel else "Conv",
        decoder_norm_types=tuple("batch_norm" if i < bn else "rms_norm" for i in range(n)),
        decoder_act_fns=tuple("relu" if i < bn else "silu" for i in range(n)),
        encoder_out_shortcut=True,
        decoder_in_shortcut=True,
        decoder_conv_act_fn="relu",
        scaling_factor=config.scaling_factor,
    )


def _check_diffusers_dc_config(cfg_json: dict, config: DCAEConfig, where: str) -> None:
    """Compare an AutoencoderDC config.json with our architecture; one clear error naming the first differences."""
    ours = diffusers_dc_kwargs(dataclasses.replace(config, residual_autoencoding=True))
    n = len(config.widths)

    def norm(key, v):  # diffusers accepts a str for "same value in every stage"; JSON turns tuples into lists
        if key == "downsample_block_type":  # diffusers only tests == "pixel_unshuffle" (sana says "Conv")
            return v == "pixel_unshuffle"
        if isinstance(v, str) and key.endswith(("_types", "_fns")):
            return [v] * n
        return json.loads(json.dumps(v))

    diffs = [f"{k}: file {cfg_json[k]!r} vs ours {v!r}" for k, v in ours.items()
             if k in cfg_json and k != "scaling_factor" and norm(k, cfg_json[k]) != norm(k, v)]
    if diffs:
        raise ValueError(f"{where}: config.json describes another architecture: " + "; ".join(diffs[:4]))


# ----------------------------------------------------------------------------------------------------------------------
# SD-VAE: ours <-> diffusers `AutoencoderKL` <-> CompVis/LDM (reference §7 key table)
# ----------------------------------------------------------------------------------------------------------------------

# Leaf names inside a ResnetBlock / AttentionBlock, per layout.
_KL_RES = {"ours": ("norm1", "conv1", "norm2", "conv2", "shortcut"),
           "diffusers": ("norm1", "conv1", "norm2", "conv2", "conv_shortcut"),
           "ldm": ("norm1", "conv1", "norm2", "conv2", "nin_shortcut")}
_KL_ATT = {"ours": ("norm", "q", "k", "v", "proj"),
           "diffusers": ("group_norm", "to_q", "to_k", "to_v", "to_out.0"),
           "ldm": ("norm", "q", "k", "v", "proj_out")}
# diffusers files written before the attention rename (diffusers `_convert_deprecated_attention_blocks`) name the
# same leaves query / key / value / proj_attn; accepted when reading, never written.
_KL_ATT_DEPRECATED = {"diffusers": ("group_norm", "query", "key", "value", "proj_attn")}

# One row per module: (ours, diffusers, ldm). {i}: level (0 = full resolution), {k}: diffusers decoder block
# index = L-1-i (diffusers orders decoder blocks by execution), {j}: block in level, {r} / {a}: ResnetBlock /
# AttentionBlock leaf names (tables above).
_KL_KEY_TABLE = (
    ("encoder.conv_in", "encoder.conv_in", "encoder.conv_in"),
    ("encoder.levels.{i}.blocks.{j}.{r}", "encoder.down_blocks.{i}.resnets.{j}.{r}", "encoder.down.{i}.block.{j}.{r}"),
    ("encoder.levels.{i}.attns.{j}.{a}", "encoder.down_blocks.{i}.attentions.{j}.{a}", "encoder.down.{i}.attn.{j}.{a}"),
    ("encoder.levels.{i}.down.conv", "encoder.down_blocks.{i}.downsamplers.0.conv", "encoder.down.{i}.downsample.conv"),
    ("encoder.mid.block_1.{r}", "encoder.mid_block.resnets.0.{r}", "encoder.mid.block_1.{r}"),
    ("encoder.mid.attn.{a}", "encoder.mid_block.attentions.0.{a}", "encoder.mid.attn_1.{a}"),
    ("encoder.mid.block_2.{r}", "encoder.mid_block.resnets.1.{r}", "encoder.mid.block_2.{r}"),
    ("encoder.norm_out", "encoder.conv_norm_out", "encoder.norm_out"),
    ("encoder.conv_out", "encoder.conv_out", "encoder.conv_out"),
    ("quant_conv", "quant_conv", "quant_conv"),
    ("post_quant_conv", "post_quant_conv", "post_quant_conv"),
    ("decoder.conv_in", "decoder.conv_in", "decoder.conv_in"),
    ("decoder.mid.block_1.{r}", "decoder.mid_block.resnets.0.{r}", "decoder.mid.block_1.{r}"),
    ("decoder.mid.attn.{a}", "decoder.mid_block.attentions.0.{a}", "decoder.mid.attn_1.{a}"),
    ("decoder.mid.block_2.{r}", "decoder.mid_block.resnets.1.{r}", "decoder.mid.block_2.{r}"),
    ("decoder.levels.{i}.blocks.{j}.{r}", "decoder.up_blocks.{k}.resnets.{j}.{r}", "decoder.up.{i}.block.{j}.{r}"),
    ("decoder.levels.{i}.attns.{j}.{a}", "decoder.up_blocks.{k}.attentions.{j}.{a}", "decoder.up.{i}.attn.{j}.{a}"),
    ("decoder.levels.{i}.up.conv", "decoder.up_blocks.{k}.upsamplers.0.conv", "decoder.up.{i}.upsample.conv"),
    ("decoder.norm_out", "decoder.conv_norm_out", "decoder.norm_out"),
    ("decoder.conv_out", "decoder.conv_out", "decoder.conv_out"),
)
_KL_LAYOUTS = ("ours", "diffusers", "ldm")
# LDM training checkpoints also hold the loss (LPIPS + discriminator) and EMA bookkeeping: not autoencoder weights.
_LDM_SKIP = ("loss.", "model_ema.")


def _kl_pattern(template: str, layout: str) -> re.Pattern:
    """Regex for one template in one layout, e.g. 'encoder.down.{i}.block.{j}.{r}' -> named groups."""
    rx = re.escape(template)
    for name in ("i", "j", "k"):
        rx = rx.replace(re.escape("{" + name + "}"), f"(?P<{name}>\\d+)")
    rx = rx.replace(re.escape("{r}"), "(?P<r>" + "|".join(map(re.escape, _KL_RES[layout])) + ")")
    att_names = _KL_ATT[layout] + _KL_ATT_DEPRECATED.get(layout, ())
    rx = rx.replace(re.escape("{a}"), "(?P<a>" + "|".join(map(re.escape, att_names)) + ")")
    return re.compile("^" + rx + r"\.(?P<param>weight|bias)$")


_KL_PATTERNS = {lay: [_kl_pattern(row[n], lay) for row in _KL_KEY_TABLE] for n, lay in enumerate(_KL_LAYOUTS)}


def _kl_num_levels(keys) -> int:
    """L from the encoder level indices, which all three layouts number the same way."""
    found = [int(m.group(1)) for k in keys if (m := re.match(r"^encoder\.(?:levels|down_blocks|down)\.(\d+)\.", k))]
    if not found:
        raise KeyError("no encoder level keys found: not an SD-VAE / AutoencoderKL state dict")
    return max(found) + 1


def _kl_convert(state_dict: dict, src: str, dst: str) -> dict:
    """Rename every key from layout `src` to `dst`; unknown keys raise (strict). 1x1-conv <-> Linear attention
    weights are reshaped for the LDM layout. Values are shared, not copied."""
    d = _KL_LAYOUTS.index(dst)
    num_levels = _kl_num_levels(state_dict)
    out: dict = {}
    for key, value in state_dict.items():
        for row, pat in zip(_KL_KEY_TABLE, _KL_PATTERNS[src]):
            m = pat.match(key)
            if m:
                break
        else:
            raise KeyError(f"unexpected {src} SD-VAE key {key!r}")
        g = m.groupdict()  # only the placeholders of this row: some of i, j, k, r, a; always param
        if "k" in g:  # diffusers decoder block k holds level L-1-k
            g["i"] = str(num_levels - 1 - int(g["k"]))
        if "i" in g:
            g["k"] = str(num_levels - 1 - int(g["i"]))
        if "r" in g:  # ResnetBlock leaf
            g["r"] = _KL_RES[dst][_KL_RES[src].index(g["r"])]
        att = g.get("a")  # AttentionBlock leaf
        if att is not None:
            names = _KL_ATT[src] if att in _KL_ATT[src] else _KL_ATT_DEPRECATED[src]
            g["a"] = _KL_ATT[dst][names.index(att)]
        new_key = row[d].format(**g) + "." + g["param"]
        # LDM attention q/k/v/proj_out are 1x1 convs (C, C, 1, 1); ours and diffusers are Linear (C, C).
        if att is not None and g["param"] == "weight" and "norm" not in att:
            if dst == "ldm":
                value = value[:, :, None, None]
            elif src == "ldm":
                value = value[:, :, 0, 0] if value.ndim == 4 else value
        if new_key in out:
            raise KeyError(f"two {src} keys map to {new_key!r}")
        out[new_key] = value
    return out


def convert_diffusers_kl_to_ours(state_dict: dict) -> dict:
    """diffusers `AutoencoderKL` state dict (e.g. `stabilityai/sd-vae-ft-ema`) -> `SDVAE` state dict."""
    return _kl_convert(state_dict, "diffusers", "ours")


def convert_ours_to_diffusers_kl(state_dict: dict) -> dict:
    """`SDVAE` state dict -> diffusers `AutoencoderKL` layout (Attn*Block2D types where attention_levels is set)."""
    return _kl_convert(state_dict, "ours", "diffusers")


def convert_ldm_kl_to_ours(state_dict: dict, prefix: str = "") -> dict:
    """CompVis/LDM first-stage state dict (`kl-f*.ckpt` 'state_dict', SD `vae-ft-ema-*.ckpt`) -> `SDVAE`.

    With `prefix` (e.g. 'first_stage_model.' in a full Stable Diffusion checkpoint) only keys under it are taken.
    Keys under `loss.` / `model_ema.` (training loss modules, EMA bookkeeping) are skipped; anything else unknown
    raises."""
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(_LDM_SKIP)}
    return _kl_convert(state_dict, "ldm", "ours")


def convert_ours_to_ldm_kl(state_dict: dict) -> dict:
    """`SDVAE` state dict -> CompVis/LDM layout (1x1-conv attention projections)."""
    return _kl_convert(state_dict, "ours", "ldm")


def diffusers_kl_kwargs(config: SDVAEConfig) -> dict:
    """Constructor arguments of the diffusers `AutoencoderKL` with the same architecture (test oracle, export)."""
    levels = range(len(config.block_out_channels))
    return dict(  # noqa: C408 (reads like the constructor call)
        in_channels=config.in_channels, out_channels=config.in_channels,
        block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels, norm_num_groups=config.norm_groups,
        down_block_types=tuple("AttnDownEncoderBlock2D" if i in config.attention_levels else "DownEncoderBlock2D"
                               for i in levels),
        up_block_types=tuple("AttnUpDecoderBlock2D" if i in config.attention_levels else "UpDecoderBlock2D"
                             for i in reversed(levels)),
        mid_block_add_attention=config.mid_attention, scaling_factor=config.scaling_factor,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------------


def _check_model_name(cfg_json: dict, name: str, cfg_file: Path) -> None:
    """efficientvit's PyTorchModelHubMixin writes {"model_name": NAME} into the config.json beside the weights."""
    model_name = cfg_json.get("model_name")
    if isinstance(model_name, str) and model_name != name:
        raise ValueError(f"{name}: {cfg_file} says model_name={model_name!r}; load it under that name")


def _dc_ae_state_to_ours(state: dict[str, torch.Tensor], config: DCAEConfig) -> dict[str, torch.Tensor]:
    """A DC-AE state dict in efficientvit (= our) names as is; one in diffusers names converted."""
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.", "encoder.conv_in")) for k in state):
        return convert_diffusers_dc_to_ours(state, config)
    return state


def _empty(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):  # no random init of 1 B parameters that are overwritten right away
        return zoo.build(name, **overrides)


def load_pretrained(name: str, path: str | os.PathLike) -> nn.Module:
    """Registry model `name` with released weights from `path` (a folder or a file), in eval mode (BN running stats).

    Layout detection: `diffusion_pytorch_model.safetensors` -> diffusers; `model.safetensors` or a single pickle ->
    efficientvit (DC-AE) / our layout; a single file -> by its keys.
    """
    path = Path(path)
    family = zoo.family_of(name)
    model = _empty(name)
    if path.is_dir():
        cfg_file = path / "config.json"
        cfg_json = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        candidates = [path / "diffusion_pytorch_model.safetensors", path / "model.safetensors"]
        candidates += sorted(p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        file = next((p for p in candidates if p.is_file()), None)
        if file is None:
            raise ValueError(f"{name}: {path} holds no diffusion_pytorch_model.safetensors, model.safetensors or "
                             f"{'/'.join(PICKLE_SUFFIXES)} file")
        if family == "dc-ae" and file.name.startswith("diffusion_pytorch_model"):
            _check_diffusers_dc_config(cfg_json, model.config, f"{name}: {path}")
        _check_model_name(cfg_json, name, cfg_file)
    else:
        file = path
    state = read_state_dict(file)
    if family == "dc-ae":
        state = _dc_ae_state_to_ours(state, model.config)
    elif family == "sd-vae" and set(state) != set(model.state_dict()):  # diffusers or LDM layout, not ours
        if any(k.startswith("first_stage_model.") for k in state):  # a full Stable Diffusion checkpoint
            state = convert_ldm_kl_to_ours(state, prefix="first_stage_model.")
        elif any(k.startswith(("encoder.down.", "loss.")) for k in state):  # CompVis kl-f*.ckpt (`loss.` keys)
            state = convert_ldm_kl_to_ours(state)
        else:
            state = convert_diffusers_kl_to_ours(state)
    return load_state_dict_strict(model, state, source=str(file)).eval()


def save(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write `model` as one safetensors file with its family, name and config in the metadata (`models.io`, atomic)."""
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "family": zoo.family_of_model(model),
        "name": getattr(model, "name", ""),
        "config": json.dumps(dataclasses.asdict(model.config)),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))
    return path


DIFFUSERS_VERSION = "0.32.0"  # the oldest diffusers whose AutoencoderDC reads the exported folders


def export_diffusers(model: nn.Module, folder: str | os.PathLike) -> Path:
    """Write a DC-AE as a diffusers ``AutoencoderDC`` folder (an SD-VAE as ``AutoencoderKL``): ``config.json`` and
    ``diffusion_pytorch_model.safetensors`` in diffusers' key layout, which ``from_pretrained(folder)`` loads. Raises
    ValueError for an architecture diffusers cannot express (e.g. DC-AE without its shortcuts)."""
    family = zoo.family_of_model(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if family == "dc-ae":
        name, kwargs, state = "AutoencoderDC", diffusers_dc_kwargs(model.config), convert_ours_to_diffusers_dc(
            state, model.config)
    elif family == "sd-vae":
        name, kwargs, state = "AutoencoderKL", diffusers_kl_kwargs(model.config), convert_ours_to_diffusers_kl(state)
    else:
        raise ValueError(f"{family} has no diffusers autoencoder class")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": name, "_diffusers_version": DIFFUSERS_VERSION,
              **json.loads(json.dumps(kwargs))}  # tuples as lists, as diffusers writes them
    atomic_write_bytes(folder / "config.json", (json.dumps(config, indent=2) + "\n").encode())
    atomic_write_bytes(folder / "diffusion_pytorch_model.safetensors", safetensors_bytes(
        {k: v.contiguous() for k, v in state.items()}))
    return folder


def _config_from_json(cls, data: dict):
    """Rebuild a config dataclass from JSON: lists become tuples where the field is a tuple."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"config has fields unknown to {cls.__name__}: {unknown}")

    def fix(v, hint):
        if isinstance(v, list):
            args = typing.get_args(hint)
            inner = args[0] if args else None
            return tuple(fix(x, inner) for x in v)
        return v

    return cls(**{k: fix(v, hints[k]) for k, v in data.items()})


def load(path: str | os.PathLike) -> nn.Module:
    """Inverse of `save`: rebuild the module from the metadata and load its tensors strictly (eval mode)."""
    path = Path(path)
    metadata = _read_safetensors(path, _safetensors_metadata)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not a dcae-bench checkpoint (metadata format {metadata.get('format')!r}); "
                         f"official weights load with models.load_pretrained(name, path)")
    family = zoo.FAMILIES[metadata["family"]]
    config = _config_from_json(family.config_class, json.loads(metadata["config"]))
    with torch.device("meta"):
        model = family.model_class(config)
    model.name = metadata.get("name") or metadata["family"]
    return load_state_dict_strict(model, read_state_dict(path), source=str(path)).eval()


# ----------------------------------------------------------------------------------------------------------------
# PixArt-α backbone: diffusers layout (the parity oracle of tests/test_backbones.py)
# ----------------------------------------------------------------------------------------------------------------

def convert_diffusers_pixart_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a diffusers ``PixArtTransformer2DModel`` state dict (no size/AR conditions) onto ``PixArtAlpha``.

    diffusers keeps q, k, v as separate linears; ours fuses self-attention qkv and cross-attention kv, so those are
    concatenated along the output dimension. Raises on any key it does not know (nothing is dropped silently).
    """
    sd, out = dict(state_dict), {}

    def take(src: str, dst: str) -> None:
        for suffix in (".weight", ".bias"):
            if src + suffix in sd:
                out[dst + suffix] = sd.pop(src + suffix)

    def fuse(srcs: list[str], dst: str) -> None:
        for suffix in (".weight", ".bias"):
            out[dst + suffix] = torch.cat([sd.pop(s + suffix) for s in srcs], dim=0)

    take("pos_embed.proj", "x_embedder")
    take("adaln_single.emb.timestep_embedder.linear_1", "t_embedder.mlp.0")
    take("adaln_single.emb.timestep_embedder.linear_2", "t_embedder.mlp.2")
    take("adaln_single.linear", "t_block.1")
    take("caption_projection.linear_1", "y_embedder.mlp.0")
    take("caption_projection.linear_2", "y_embedder.mlp.2")
    out["final_layer.scale_shift_table"] = sd.pop("scale_shift_table")
    take("proj_out", "final_layer.linear")
    i = 0
    while f"transformer_blocks.{i}.scale_shift_table" in sd:
        src, dst = f"transformer_blocks.{i}.", f"blocks.{i}."
        out[dst + "scale_shift_table"] = sd.pop(src + "scale_shift_table")
        fuse([src + f"attn1.to_{n}" for n in "qkv"], dst + "attn.qkv")
        take(src + "attn1.to_out.0", dst + "attn.proj")
        take(src + "attn2.to_q", dst + "cross_attn.q")
        fuse([src + "attn2.to_k", src + "attn2.to_v"], dst + "cross_attn.kv")
        take(src + "attn2.to_out.0", dst + "cross_attn.proj")
        take(src + "ff.net.0.proj", dst + "mlp.0")
        take(src + "ff.net.2", dst + "mlp.2")
        i += 1
    sd = {k: v for k, v in sd.items() if not k.endswith("pos_embed")}  # diffusers' sin-cos buffer; ours is recomputed
    if sd:
        raise KeyError(f"unconverted diffusers PixArt keys: {sorted(sd)[:8]}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Released DC-AE latent-diffusion models: official U-ViT / DiT names <-> ours (reference/generation.md §4)
# ----------------------------------------------------------------------------------------------------------------

# (official, ours) key prefixes. Every other key is the same in both (norm1/2, attn.qkv/proj, skip_linear, norm,
# decoder_pred, t_embedder.mlp.{0,2}, adaLN_modulation.1, final_layer.linear, U-ViT's learned pos_embed), except the
# transformer blocks' MLP: the official timm `Mlp` names its linears fc1 / fc2, ours is an nn.Sequential (mlp.0 /
# mlp.2). Only block MLPs are renamed: DiT's t_embedder.mlp.0 / .2 is an nn.Sequential in both.
_UVIT_RENAMES = (("patch_embed.proj.", "patch_embed."), ("label_emb.embedding_table.", "label_emb."))
_DIT_RENAMES = (("x_embedder.proj.", "x_embedder."), ("y_embedder.embedding_table.", "y_embedder.table."))
_UVIT_BLOCKS = r"(in_blocks\.\d+|mid_block|out_blocks\.\d+)"  # regex of a block's key prefix
_DIT_BLOCKS = r"(blocks\.\d+)"
_MLP_RENAMES = (("fc1", "0"), ("fc2", "2"))  # (official, ours) leaf of a block's MLP linears
RELEASED_EMA_DECAY = 0.9999  # the trainer keeps EMA weights under ckpt["ema"][decay]; the released runs used 0.9999


def _rename(state_dict: dict[str, torch.Tensor], renames, blocks: str, to_ours: bool) -> dict[str, torch.Tensor]:
    """Apply (official, ours) prefix renames and the block-MLP renames in one direction; keys no rule matches are
    kept (strict loading names them)."""
    out = {}
    for key, t in state_dict.items():
        for official, ours in renames:
            old, new = (official, ours) if to_ours else (ours, official)
            if key.startswith(old):
                key = new + key[len(old):]
        for official, ours in _MLP_RENAMES:
            old, new = (official, ours) if to_ours else (ours, official)
            key = re.sub(rf"^{blocks}\.mlp\.{old}\.", rf"\1.mlp.{new}.", key)
        out[key] = t
    return out


def convert_official_uvit_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """efficientvit `diffusioncore/models/uvit.py` state dict (prefix `uvit.` / `diffusion_model.` removed) -> `UViT`.

    The official model with `mlp_time_embed=False` (every release) has no time-embedding weights, as ours."""
    return _rename(state_dict, _UVIT_RENAMES, _UVIT_BLOCKS, to_ours=True)


def convert_ours_to_official_uvit(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`UViT` state dict -> the efficientvit names (inverse of `convert_official_uvit_to_ours`)."""
    return _rename(state_dict, _UVIT_RENAMES, _UVIT_BLOCKS, to_ours=False)


def convert_official_dit_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """efficientvit `diffusioncore/models/dit.py` state dict (prefix removed) -> `DiT`.

    The official file carries the fixed sin-cos `pos_embed` (a frozen Parameter, 1 x T x D); ours recomputes it as a
    non-persistent buffer. It is checked against ours (same T and D) and then dropped, so a checkpoint with another
    position embedding raises instead of loading silently."""
    if "pos_embed" not in state_dict:
        raise ValueError("official DiT state dict has no pos_embed (every efficientvit DiT file carries its fixed "
                         "sin-cos table): not an efficientvit DiT checkpoint?")
    pos = state_dict["pos_embed"]
    grid = math.isqrt(pos.shape[1]) if pos.ndim == 3 else 0
    if pos.ndim != 3 or pos.shape[0] != 1 or grid * grid != pos.shape[1]:
        raise ValueError(f"official DiT pos_embed has shape {tuple(pos.shape)}; expected (1, T, D) with T a square")
    ours = sincos_2d(pos.shape[2], grid)[None]
    tol = max(1e-6, torch.finfo(pos.dtype).eps)  # fp32 files: rounding only; half-precision files: one ulp
    diff = (pos.float() - ours).abs().max().item()
    if diff > tol:
        raise ValueError(f"official DiT pos_embed differs from the fixed sin-cos table by up to {diff:.3g} "
                         f"(tolerance {tol:.1g}): a DiT with another position embedding, which ours cannot hold")
    rest = {k: v for k, v in state_dict.items() if k != "pos_embed"}
    return _rename(rest, _DIT_RENAMES, _DIT_BLOCKS, to_ours=True)


def convert_ours_to_official_dit(state_dict: dict[str, torch.Tensor], config: DiTConfig) -> dict[str, torch.Tensor]:
    """`DiT` state dict -> the efficientvit names, with the fixed sin-cos `pos_embed` of `config` added back."""
    out = _rename(state_dict, _DIT_RENAMES, _DIT_BLOCKS, to_ours=False)
    out["pos_embed"] = sincos_2d(config.hidden_size, config.input_size // config.patch_size)[None]
    return out


@dataclasses.dataclass(frozen=True)
class ReleasedStateDicts:
    """What a released diffusion file holds, in the official names (prefixes `diffusion_model.` / `uvit.` removed)."""

    backbone: dict[str, torch.Tensor]          # U-ViT or DiT, official names
    autoencoder: dict[str, torch.Tensor] | None  # DC-AE, efficientvit (= our) names; None in a trainer checkpoint
    layout: str                                # "hub" (HF DCAE_Diffusion_HF file) | "trainer" (EMA of a run)
    family: str | None                         # "uvit" | "dit" as the keys say; None if they say neither
    scaling_factor: float | None = None        # a scalar `scaling_factor` tensor, where the file has one


def _official_family(state_dict: dict[str, torch.Tensor]) -> str | None:
    if "patch_embed.proj.weight" in state_dict:
        return "uvit"
    if "x_embedder.proj.weight" in state_dict:
        return "dit"
    return None


def _split_hub(state: dict[str, torch.Tensor], path: Path) -> ReleasedStateDicts:
    """The hub layout: `DCAE_Diffusion_HF` has the submodules `diffusion_model` and `autoencoder`."""
    parts: dict[str, dict[str, torch.Tensor]] = {"diffusion_model": {}, "autoencoder": {}}
    others = sorted({k.split(".", 1)[0] for k in state if k.split(".", 1)[0] not in parts} - {"scaling_factor"})
    if others or not any(k.startswith("diffusion_model.") for k in state):
        raise ValueError(f"{path}: not a released diffusion file: expected keys diffusion_model.* and autoencoder.* "
                         f"(hub layout) or a trainer checkpoint with ckpt['ema'][{RELEASED_EMA_DECAY}]; "
                         f"found {'prefixes ' + ', '.join(others[:6]) if others else 'no diffusion_model.* keys'}")
    for key, t in state.items():
        if "." in key:
            prefix, rest = key.split(".", 1)
            parts[prefix][rest] = t
    scale = state.get("scaling_factor")
    return ReleasedStateDicts(parts["diffusion_model"], parts["autoencoder"] or None, "hub",
                              _official_family(parts["diffusion_model"]),
                              float(scale.reshape(-1)[0]) if scale is not None else None)


def _split_trainer(ckpt: dict, path: Path) -> ReleasedStateDicts:
    """The efficientvit trainer checkpoint: ckpt["ema"] = {decay: ModuleDict({"uvit" | "dit": net}).state_dict()}."""
    ema = ckpt["ema"]
    if not isinstance(ema, dict) or RELEASED_EMA_DECAY not in ema:
        found = list(ema) if isinstance(ema, dict) else type(ema).__name__
        raise ValueError(f"{path}: trainer checkpoint without EMA {RELEASED_EMA_DECAY} weights (ckpt['ema'] has "
                         f"{found}); the released models are the EMA {RELEASED_EMA_DECAY} weights")
    state = ema[RELEASED_EMA_DECAY]
    prefixes = sorted({k.split(".", 1)[0] for k in state})
    if prefixes not in (["uvit"], ["dit"]):
        raise ValueError(f"{path}: EMA keys should all start with 'uvit.' or 'dit.' (the trainer's ModuleDict), "
                         f"found prefixes {prefixes[:6]}")
    family = prefixes[0]
    backbone = {k[len(family) + 1:]: t for k, t in state.items()}
    return ReleasedStateDicts(backbone, None, "trainer", family)


def read_released_diffusion(path: str | os.PathLike) -> ReleasedStateDicts:
    """Tensors of a released diffusion file, split into backbone and autoencoder, with the layout it was found in.

    - hub: a safetensors file or flat pickle with keys `diffusion_model.*` (U-ViT / DiT, official names),
      `autoencoder.*` (the DC-AE, efficientvit names) and perhaps a scalar `scaling_factor`;
    - trainer: an efficientvit trainer `.pt`: `ckpt["ema"][0.9999]` holds the EMA weights, prefixed `uvit.` or `dit.`
      (its `state_dict` entry, the raw training weights, is never used: the paper evaluates EMA weights).
    """
    path = Path(path)
    if path.suffix not in PICKLE_SUFFIXES:
        return _split_hub(read_state_dict(path), path)  # read_state_dict names a missing or foreign file
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    obj = _torch_load_weights_only(path)
    if isinstance(obj, dict) and "ema" in obj:
        return _split_trainer(obj, path)
    if isinstance(obj, dict) and "state_dict" in obj:
        raise ValueError(f"{path}: trainer checkpoint without EMA weights (no 'ema' entry; top-level keys "
                         f"{list(obj)[:8]}); the released models are the EMA {RELEASED_EMA_DECAY} weights")
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a trainer checkpoint (a dict with 'ema') or a flat dict of tensors")
    return _split_hub(obj, path)


@dataclasses.dataclass(frozen=True)
class ReleasedDiffusionModel:
    """A released diffusion model loaded strictly: `load_released_diffusion`'s answer."""

    backbone: nn.Module              # UViT or DiT in eval mode, `.name` = the released name
    info: ReleasedDiffusion          # registry entry: autoencoder name, latent shape, CFG scale, paper row
    autoencoder: nn.Module | None    # the hub file's DC-AE; None for a trainer checkpoint (load info.autoencoder)
    layout: str                      # "hub" | "trainer"
    path: Path                       # the file read
    scaling_factor: float            # latents the backbone sees are z · scaling_factor (the autoencoder's, §1)


def released_diffusion_info(name: str) -> ReleasedDiffusion:
    """The `RELEASED_DIFFUSION` entry of `name`, or a ValueError naming the reason or the close names."""
    if name in UNSUPPORTED_RELEASED_DIFFUSION:
        raise ValueError(f"{name}: released, but not loadable here: {UNSUPPORTED_RELEASED_DIFFUSION[name]}")
    if name not in RELEASED_DIFFUSION:
        close = difflib.get_close_matches(name, list(RELEASED_DIFFUSION), n=4, cutoff=0.6)
        hint = f"close names: {', '.join(close)}" if close else f"known: {', '.join(RELEASED_DIFFUSION)}"
        raise ValueError(f"unknown released diffusion model {name!r}; {hint}")
    return RELEASED_DIFFUSION[name]


def released_diffusion_candidates(name: str, folder: str | os.PathLike) -> list[Path]:
    """Where `load_released_diffusion` looks, in this order (the first that exists wins):
    `FOLDER/NAME/model.safetensors` (a hub download: `huggingface-cli download mit-han-lab/NAME --local-dir
    FOLDER/NAME`), `FOLDER/NAME.safetensors`, `FOLDER/NAME.pt`, and the single `.pt` in `FOLDER/NAME/` (e.g. the
    trainer's `checkpoint.pt`)."""
    folder = Path(folder)
    fixed = [folder / name / "model.safetensors", folder / f"{name}.safetensors", folder / f"{name}.pt"]
    sub = folder / name
    pts = sorted(sub.glob("*.pt")) if sub.is_dir() else []
    if len(pts) > 1 and not any(p.is_file() for p in fixed):
        raise ValueError(f"{name}: {len(pts)} .pt files in {sub} ({', '.join(p.name for p in pts[:4])}); "
                         f"keep exactly one there, or put the one to load at {folder / (name + '.pt')}")
    return fixed + pts


def _find_released_file(name: str, folder: str | os.PathLike) -> Path:
    candidates = released_diffusion_candidates(name, folder)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ValueError(f"no released checkpoint for {name} under {folder}; expected "
                         f"{folder}/{name}/model.safetensors (hub download), {folder}/{name}.safetensors, "
                         f"{folder}/{name}.pt or one {folder}/{name}/*.pt")
    cfg_file = path.parent / "config.json"
    if path.parent.name == name and cfg_file.is_file():
        _check_model_name(json.loads(cfg_file.read_text()), name, cfg_file)
    return path


def _restore_fixed_buffers(model: nn.Module) -> None:
    """Non-persistent buffers are in no state dict, so a model built on the meta device lacks them: DiT's fixed
    sin-cos table is recomputed here (as `DiT.__init__` does); any other tensor left on meta is a bug."""
    if isinstance(model, DiT):
        model.pos_embed = sincos_2d(model.config.hidden_size, model.grid)[None]
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{getattr(model, 'name', type(model).__name__)}: tensors not loaded: {left[:5]}")


def _released_backbone(info: ReleasedDiffusion, state: ReleasedStateDicts, source: str, **overrides) -> nn.Module:
    """Build `info.backbone` for the released latent shape (meta device), convert the official names, load strictly."""
    family = BACKBONES[info.backbone].family
    if state.family is not None and state.family != family:
        raise ValueError(f"{info.name} is a {family} ({info.backbone}) but {source} holds a {state.family} "
                         f"(keys {'patch_embed.proj' if state.family == 'uvit' else 'x_embedder.proj'}.*): "
                         "a checkpoint of another model")
    with torch.device("meta"):
        model = build_backbone(info.backbone, info.latent_channels, info.latent_size, info.patch_size,
                               **{"num_classes": info.num_classes, **overrides})
    model.name = info.name
    if family == "dit":
        pos = state.backbone.get("pos_embed")
        if pos is not None and pos.shape != model.pos_embed.shape:
            raise ValueError(f"{info.name}: pos_embed in {source} is {tuple(pos.shape)}, expected "
                             f"{tuple(model.pos_embed.shape)}: a DiT for another latent size or width")
        ours = convert_official_dit_to_ours(state.backbone)
    else:
        ours = convert_official_uvit_to_ours(state.backbone)
    load_state_dict_strict(model, ours, source=source)
    _restore_fixed_buffers(model)
    return model.eval()


def _released_autoencoder(name: str, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The hub file's DC-AE, efficientvit names (= ours); a diffusers-named one is converted as in `load_pretrained`."""
    model = _empty(name)
    return load_state_dict_strict(model, _dc_ae_state_to_ours(state, model.config),
                                  source=f"{source} (autoencoder.*)").eval()


def load_released_diffusion(name: str, folder: str | os.PathLike, **overrides) -> ReleasedDiffusionModel:
    """Released DC-AE latent-diffusion model `name` (a `models.backbones.RELEASED_DIFFUSION` key, e.g.
    "dc-ae-f64c128-in-1.0-uvit-h-in-512px") from `folder`, loaded strictly into our UViT / DiT.

    The file is looked up by `released_diffusion_candidates` (the error names them when none exists); both the hub
    layout and an efficientvit trainer checkpoint are read (`read_released_diffusion`). `overrides` go to
    `build_backbone` (e.g. `activation_checkpointing=True`). A hub file also gives the autoencoder; a trainer
    checkpoint does not (`autoencoder` is None): load it by its released name,
    `models.load_pretrained(result.info.autoencoder, path_of_that_autoencoder)`.
    """
    info = released_diffusion_info(name)
    path = _find_released_file(name, folder)
    state = read_released_diffusion(path)
    expected_scale = zoo.get_config(info.autoencoder).scaling_factor
    # Scaling factors are published to 4 digits; a float32 scalar in the file is off from them by ~1e-8.
    if state.scaling_factor is not None and abs(state.scaling_factor - expected_scale) > 1e-5:
        raise ValueError(f"{name}: {path} has scaling_factor {state.scaling_factor:.6g}, but {info.autoencoder} has "
                         f"{expected_scale}: a model trained on other latents")
    backbone = _released_backbone(info, state, str(path), **overrides)
    autoencoder = None if state.autoencoder is None else _released_autoencoder(info.autoencoder, state.autoencoder,
                                                                                str(path))
    return ReleasedDiffusionModel(backbone, info, autoencoder, state.layout, path, expected_scale)
