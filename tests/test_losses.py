"""Losses: hinge GAN losses, PatchGAN shapes, LPIPS preflight by path (never a download)."""
import pytest
import torch

from models import losses

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_l1_is_mean_absolute_error():
    x = torch.zeros(2, 3, 4, 4)
    assert losses.l1_loss(x + 0.5, x).item() == 0.5


def test_hinge_losses():
    real, fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0)
    assert losses.discriminator_hinge_loss(real, fake).item() == 0.0  # confident and right: no loss
    assert losses.discriminator_hinge_loss(fake, real).item() == 3.0  # 0.5 * (3 + 3)
    assert losses.generator_adversarial_loss(fake).item() == 2.0


def test_patch_discriminator_outputs_patch_logits():
    d = losses.PatchDiscriminator(width=8, n_layers=3)
    out = d(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1, 6, 6)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6
    d = losses.PatchDiscriminator(width=8, n_layers=2, norm="group")
    assert d(torch.randn(1, 3, 32, 32)).shape[1] == 1


def test_lpips_unavailable_without_cached_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("DCAE_BENCH_NO_LPIPS", raising=False)
    assert losses.lpips_backbone_path("alex") is None
    assert losses.build_perceptual_loss("alex") is None
    assert losses.perceptual_status(None) == "none"
    assert not any(tmp_path.rglob("*.pth"))  # nothing was downloaded
    assert "alexnet-owt-7be5be79.pth" in losses.perceptual_unavailable_reason()


def test_lpips_loads_local_backbone_file(tmp_path, monkeypatch):
    """Route B of reference/evaluation.md §5 with a random AlexNet features file: loads, and d(x, x) = 0."""
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("DCAE_BENCH_NO_LPIPS", raising=False)
    torch.manual_seed(0)
    feats = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items() if k.startswith("features.")}
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(feats, tmp_path / "hub" / "checkpoints" / losses.LPIPS_BACKBONE_FILES["alex"])
    loss = losses.build_perceptual_loss("alex")
    assert loss is not None and losses.perceptual_status(loss) == "lpips-alex"
    assert torch.equal(loss.lpips.net.slice1[0].weight, feats["features.0.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    assert loss(x, -x).item() > 0.0
    assert not any(p.requires_grad for p in loss.parameters())
    monkeypatch.setenv("DCAE_BENCH_NO_LPIPS", "1")
    assert losses.build_perceptual_loss("alex") is None
