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


def test_secondary_numbers_are_read_from_their_data_file():
    from bench import paper
    from bench.artifacts import figure5
    fig5 = paper.secondary("figure5", "rfid")
    assert list(fig5) == list(figure5.VARIANTS) and all(v > 0 for v in fig5.values())
    assert paper.secondary("figure5", "no-such-metric") == {}
    import csv
    with open(paper.SECONDARY_CSV_PATH, newline="") as f:
        assert all(r["source"].startswith("shared/reference/") for r in csv.DictReader(f))  # each cites its source
