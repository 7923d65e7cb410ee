"""The shipped copy of the paper's numbers and spec validation."""
from bench import paper


def test_paper_numbers_cover_every_table():
    arts = paper.artifacts()
    for a in ("table1", "table2", "table3", "table4", "table5", "figure2a", "figure3b", "section3.2", "abstract"):
        assert a in arts
    v = paper.values("table2", setting="ImageNet 512x512 f64c128 latent 8x8x128", autoencoder="DC-AE")
    assert v == {"rfid": 0.22, "psnr": 26.15, "ssim": 0.71, "lpips": 0.080}


def test_abstract_claims():
    rows = paper.select("abstract")
    claims = {r["metric"]: float(r["value"]) for r in rows}
    assert claims == {"inference_speedup": 19.1, "training_speedup": 17.9}


def test_ambiguous_selection_raises():
    import pytest
    with pytest.raises(ValueError, match="ambiguous"):
        paper.values("table2", autoencoder="DC-AE")
