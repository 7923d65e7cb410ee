"""The caption-features folder (bench/evals/captions.py): PixArt-α's .npz layout, validation with one-line errors,
pairing with an image folder by file stem, and the synthetic folder of the smoke scale."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from bench.configs import SYNTHETIC, DataOption, folder
from bench.errors import Unavailable, UsageError
from bench.evals import captions as C
from bench.scales import SCALES
from models import data

L, E = 6, 8  # small stand-ins for PixArt-α's 120 tokens x 4096 channels (the checks take them as arguments)
DROP = "drop"  # leave that key out of the file


def _npz(path: Path, features=None, mask=None, **extra) -> Path:
    """One caption file in PixArt-α's layout: (1, L, E) float16 features, (1, L) mask of 3 leading ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    features = np.ones((1, L, E), np.float16) if features is None else features
    mask = (np.arange(L) < 3).astype(np.int64)[None] if mask is None else mask
    arrays = {"caption_feature": features, "attention_mask": mask, **extra}
    np.savez(path, **{k: v for k, v in arrays.items() if not (isinstance(v, str) and v == DROP)})
    return path


def _images(root: Path, names: list[str]) -> data.ImageFolderDataset:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (120, 30, 200)).save(root / name)
    return data.ImageFolderDataset(root, 8)


def _ctx(tmp: Path, scale: str = "smoke", data_option: DataOption | None = None) -> SimpleNamespace:
    return SimpleNamespace(scale=SCALES[scale], run_dir=tmp / "runs" / "r", options={"data": data_option})


def test_images_pair_with_features_by_stem_whatever_the_folder_layout(tmp_path):
    """MJHQ-30K keeps images in category folders and features flat: pairing is by stem, in the images' order; the
    two accepted shapes and dtypes load alike, extra files are ignored."""
    images = _images(tmp_path / "img", ["people/a.png", "animals/z.jpg", "people/m.png"])
    caps = tmp_path / "t5"
    _npz(caps / "a.npz", np.full((1, L, E), 1.0, np.float16))
    _npz(caps / "sub" / "m.npz", np.full((L, E), 2.0, np.float32), mask=np.ones(L, bool))  # (L, E), bool mask
    _npz(caps / "z.npz", np.full((1, L, E), 3.0, np.float16))
    _npz(caps / "unused.npz")
    stems = C.image_stems(images)
    assert stems == [p.stem for p in images.files] == ["z", "a", "m"]  # the images' order, not the stems'
    folder_ = C.open_caption_folder(caps, L, E, stems)
    assert folder_.stems == stems and len(folder_) == 3
    cap = folder_.batch([0, 1, 2])
    assert cap.features.dtype == torch.float32 and cap.features.shape == (3, L, E) and cap.mask.dtype == torch.bool
    assert cap.features[:, 0, 0].tolist() == [3.0, 1.0, 2.0]
    assert cap.mask.sum(1).tolist() == [3, 3, L]
    assert C.image_stems(list(range(3))) == ["00000", "00001", "00002"]  # embedded / synthetic sets: by index


def _bad(tmp: Path, case: str) -> tuple[Path, list[str]]:
    """A caption folder with one planted problem, and the image stems it must serve."""
    caps = tmp / "t5"
    if case != "missing folder":
        _npz(caps / "a.npz")
    bad = {"wrong shape": {"features": np.ones((2, L, E), np.float16)},
           "wrong token count": {"features": np.ones((1, L + 1, E), np.float16)},
           "wrong channel count": {"features": np.ones((1, L, E * 2), np.float16)},
           "wrong dtype": {"features": np.ones((1, L, E), np.int32)},
           "no features key": {"features": DROP, "prompt": np.ones(3)},
           "mask shape": {"mask": np.ones((1, L - 1), np.int64)},
           "empty mask": {"mask": np.zeros((1, L), np.int64)}}
    if case in bad:
        _npz(caps / "b.npz", **bad[case])
    elif case == "not an npz":
        (caps / "b.npz").write_bytes(b"not a zip")
    elif case == "two files, one stem":
        _npz(caps / "b.npz")
        _npz(caps / "x" / "b.npz")
    elif case not in ("missing folder", "image without features"):
        raise AssertionError(case)
    return caps, ["a", "b"]


@pytest.mark.parametrize("case, match", [
    ("missing folder", "does not exist"),
    ("image without features", "no caption features for 1 of 2 images .*'b'.*b.npz"),
    ("wrong shape", r"shape \(2, 6, 8\); expected \(1, 6, 8\) or \(6, 8\)"),
    ("wrong token count", "has 7 tokens but the backbone takes 6"),
    ("wrong channel count", "has 16 channels but the backbone's caption_channels is 8; extract the features with T5"),
    ("wrong dtype", "int32; store float16 or float32"),
    ("no features key", "has no 'caption_feature'"),
    ("mask shape", r"attention_mask has shape \(1, 5\)"),
    ("empty mask", "at least one 1"),
    ("not an npz", "not a readable .npz"),
    ("two files, one stem", "the stem 'b' names two files"),
])
def test_a_bad_caption_folder_is_a_one_line_usage_error(tmp_path, case, match):
    caps, stems = _bad(tmp_path, case)
    with pytest.raises(UsageError, match=match) as e:
        C.open_caption_folder(caps, L, E, stems)
    assert "\n" not in str(e.value) and isinstance(e.value, C.CaptionFolderError)


def test_pixart_channel_count_is_checked_at_4096(tmp_path):
    """The real sizes: 120 tokens of T5-XXL's 4096 channels; T5-large's 1024-d features are refused."""
    _npz(tmp_path / "ok.npz", np.zeros((1, 120, 4096), np.float16), np.ones((1, 120), np.int64))
    C.open_caption_folder(tmp_path, 120, 4096, ["ok"])
    _npz(tmp_path / "large.npz", np.zeros((1, 120, 1024), np.float16), np.ones((1, 120), np.int64))
    with pytest.raises(UsageError, match="1024 channels but the backbone's caption_channels is 4096"):
        C.open_caption_folder(tmp_path, 120, 4096, ["ok", "large"])


def test_two_images_with_one_stem_cannot_be_paired(tmp_path):
    images = _images(tmp_path / "img", ["people/a.png", "animals/a.jpg"])
    with pytest.raises(UsageError, match="two images share the stem 'a'") as e:
        C.image_stems(images)
    assert "\n" not in str(e.value)


def test_a_prompt_folder_is_read_in_stem_order_and_must_hold_enough_prompts(tmp_path):
    for i, stem in enumerate(["p2", "p0", "p1"]):
        _npz(tmp_path / f"{stem}.npz", np.full((1, L, E), float(i), np.float16))
    prompts = C.open_caption_folder(tmp_path, L, E, first=2)
    assert prompts.stems == ["p0", "p1"] and prompts.batch([0, 1]).features[:, 0, 0].tolist() == [1.0, 2.0]
    with pytest.raises(UsageError, match="holds 3 caption features but 5 are asked for"):
        C.open_caption_folder(tmp_path, L, E, first=5)


def test_a_named_folder_not_given_makes_the_row_unavailable_with_where_it_goes(tmp_path):
    with pytest.raises(Unavailable, match=r"no mjhq-30k-t5 folder given .*--data mjhq-30k-t5=PATH"):
        C.caption_folder(folder("mjhq-30k-t5"), _ctx(tmp_path, "paper"), L, E, ["a"])
    root = DataOption.parse([str(tmp_path / "D")])
    with pytest.raises(Unavailable, match=r"no mjhq-30k-t5 folder at .*D/mjhq-30k-t5"):
        C.caption_folder(folder("mjhq-30k-t5"), _ctx(tmp_path, "paper", root), L, E, ["a"])
    _npz(tmp_path / "D" / "mjhq-30k-t5" / "a.npz")
    assert C.caption_folder(folder("mjhq-30k-t5"), _ctx(tmp_path, "paper", root), L, E, ["a"]).stems == ["a"]


def test_synthetic_captions_are_written_in_the_format_and_read_back(tmp_path):
    ctx = _ctx(tmp_path)
    first = C.caption_folder(SYNTHETIC, ctx, L, E, stems=["00000", "00001", "00002"])
    again = C.caption_folder(SYNTHETIC, ctx, L, E, first=2)  # the prompts: the first files of the same folder
    assert first.root == again.root and first.root.parent == tmp_path / "runs" / "_cache"
    a, b = first.batch([0, 1]), again.batch([0, 1])
    assert torch.equal(a.features, b.features) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.features[0], a.features[1]) and bool(a.mask[:, 0].all())  # per stem, >= 1 token
    for p in first.files:
        C.check_file(p, L, E)
    with pytest.raises(UsageError, match="smoke check only"):
        C.caption_folder(SYNTHETIC, _ctx(tmp_path, "small"), L, E, first=2)
