"""The embedded photo set, the --data folder loader and the synthetic generator."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models import data as D


def test_split_is_disjoint_by_source_photo_and_test_has_faces_and_text():
    train = {s.name for s in D.sources("train")}
    test = {s.name for s in D.sources("test")}
    assert train and test and not (train & test)
    assert {c.source for c in D.EmbeddedPhotos("train", 32).plan} <= train
    assert {c.source for c in D.EmbeddedPhotos("test", 32).plan} <= test
    assert {"astronaut", "grace_hopper"} & test and "text" in test  # Fig. 7 needs faces and text
    assert {src for src, _ in D.SHOWCASE.values()} <= test


def test_every_source_photo_loads_offline_as_rgb_uint8():
    for s in D.SOURCES:
        img = D.load_source(s.name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 160


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_crops_are_deterministic_and_in_range(resolution):
    D._render.cache_clear()
    a = D.EmbeddedPhotos("test", resolution, n_images=16)
    D._render.cache_clear()
    b = D.EmbeddedPhotos("test", resolution, n_images=16)
    assert torch.equal(a.images, b.images) and a.manifest == b.manifest and a.identity == b.identity
    x = a[0]
    assert x.shape == (3, resolution, resolution) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert a.get_uint8(0).dtype == torch.uint8
    assert torch.allclose(a[3], a.get_uint8(3).float() / 127.5 - 1)
    other = D.EmbeddedPhotos("test", resolution, n_images=16, seed=1)
    assert other.identity != a.identity  # the seed changes the order


def test_manifest_describes_crops_and_flips():
    ds = D.EmbeddedPhotos("train", 64)
    m = ds.manifest
    assert len(m) == len(ds) >= 200
    assert {"index", "source", "box", "flip"} <= set(m[0])
    assert any(r["flip"] for r in m) and not all(r["flip"] for r in m)
    for r in m[:20]:
        left, top, right, bottom = r["box"]
        h, w = D.load_source(r["source"]).shape[:2]
        assert right - left == bottom - top and 0 <= left < right <= w and 0 <= top < bottom <= h
    # a flipped crop is the mirror of its unflipped twin
    key = {(r["source"], tuple(r["box"]), r["flip"]): r["index"] for r in m}
    (src, box, _), i = next((k, v) for k, v in key.items() if k[2])
    assert torch.equal(ds.get_uint8(i), ds.get_uint8(key[(src, box, False)]).flip(-1))


def test_too_many_images_requested_raises():
    with pytest.raises(ValueError, match="crops"):
        D.EmbeddedPhotos("test", 256, n_images=10_000)


def test_adm_center_crop_matches_the_rule():
    img = Image.fromarray(np.tile(np.arange(300, dtype=np.uint8)[None, :, None], (130, 1, 3)))  # 130 x 300
    out = D.adm_center_crop(img, 32)  # 130 >= 64 -> BOX halve to 150x65, 65 >= 64 -> 75x32; bicubic to 32 short
    assert out.shape == (32, 32, 3)
    # centre crop: the left/right ramp values are symmetric about the middle column
    assert abs(int(out[16, 0, 0]) + int(out[16, -1, 0]) - 2 * 150) < 40


def _write_folder(tmp_path, n_good=3, corrupt=True):
    rng = np.random.default_rng(0)
    sub = tmp_path / "class_a"
    sub.mkdir(parents=True)
    for i in range(n_good):
        Image.fromarray(rng.integers(0, 255, (40 + 10 * i, 50, 3), dtype=np.uint8)).save(
            sub / f"img{i}.{['png', 'jpg', 'JPEG'][i % 3]}")
    if corrupt:
        (sub / "broken.jpg").write_bytes(b"not an image at all")
        (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_image_folder_recursive_skips_corrupt_files_with_one_warning(tmp_path):
    root = _write_folder(tmp_path)
    with pytest.warns(UserWarning, match="1 unreadable image"):
        ds = D.ImageFolderDataset(root, 32)
    assert len(ds) == 3 and ds.skipped == ["class_a/broken.jpg"]
    assert ds[0].shape == (3, 32, 32) and ds.get_uint8(2).dtype == torch.uint8
    assert [r["file"] for r in ds.manifest] == sorted(r["file"] for r in ds.manifest)


def test_image_folder_truncated_file_is_skipped_not_fatal(tmp_path):
    root = _write_folder(tmp_path, corrupt=False)
    good = root / "class_a" / "img1.jpg"
    blob = good.read_bytes()
    good.write_bytes(blob[:len(blob) // 2])  # header readable, data truncated
    ds = D.ImageFolderDataset(root, 32)
    results = [ds.get_uint8(i) for i in range(len(ds))]
    assert sum(r is None for r in results) == 1 and ds.skipped
    assert ds[1].shape == (3, 32, 32)  # __getitem__ substitutes the next readable image


def test_image_folder_empty_or_unreadable_is_a_data_folder_error(tmp_path):
    with pytest.raises(D.DataFolderError, match="no .jpg"):
        D.ImageFolderDataset(tmp_path, 32)
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(D.DataFolderError, match="none of its 1 image files"):
        D.ImageFolderDataset(tmp_path, 32)
    with pytest.raises(D.DataFolderError, match="not a folder"):
        D.ImageFolderDataset(tmp_path / "missing", 32)


def test_synthetic_generator_is_seeded():
    a, b, c = D.synthetic_images(4, 32, 0), D.synthetic_images(4, 32, 0), D.synthetic_images(4, 32, 1)
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.float().std()) > 20  # not flat


def test_showcase_crops():
    names, u = D.showcase_images(64)
    assert u.shape == (len(D.SHOWCASE), 3, 64, 64) and u.dtype == torch.uint8
    assert any("face" in n for n in names) and any("text" in n or "tag" in n for n in names)


def test_the_regions_set_is_the_same_boxes_at_every_resolution_and_never_upscaled():
    """Figure 3b's two evaluation sets: the same source regions at the training and the 4x resolution."""
    low, high = D.EmbeddedPhotos(D.REGIONS, 64), D.EmbeddedPhotos(D.REGIONS, 256)
    assert low.plan == high.plan and len(low) >= 64
    assert low.regions_id == high.regions_id and low.identity != high.identity
    test = {s.name for s in D.sources("test")}
    for c in low.plan:
        left, top, right, bottom = c.box
        assert c.source in test and right - left == bottom - top == D.REGION_SIDE  # >= 256: not upscaled
    assert D.EmbeddedPhotos("test", 64).regions_id != D.EmbeddedPhotos("test", 256).regions_id
    with pytest.raises(ValueError, match="would upscale"):
        D.EmbeddedPhotos(D.REGIONS, 2 * D.REGION_SIDE)
    # the 4x images are the same content: downsampled to 64 px they are close to the 64-px images
    down = torch.nn.functional.interpolate(high.images[:8].float(), size=64, mode="area")
    assert (down - low.images[:8].float()).abs().mean() < 6  # of 255
