"""Speed: our DC-AE-f32c32 encode+decode vs diffusers `AutoencoderDC` with identical weights, CPU fp32, 256 px.

`slow` (one encode+decode is tens of seconds on 2 CPU cores). Run:
    pytest -m slow tests/test_bench_dc_ae_speed.py --benchmark-enable
The two `benchmark` tests share a group, so pytest-benchmark prints them side by side; the last test times both
interleaved (robust to a shared machine: best of N each) and asserts that ours is not slower.
"""

import time

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from models.checkpoints import (
    convert_diffusers_dc_to_ours,
    diffusers_dc_kwargs,
    load_state_dict_strict,
)
from models.dc_ae import DC_AE_VARIANTS, DCAE

pytestmark = pytest.mark.slow
NAME, SIZE = "dc-ae-f32c32-in-1.0", 256


@pytest.fixture(scope="module")
def pair():
    """(ours, diffusers, x): the same random weights in both (ours shares the oracle's tensors where it can)."""
    cfg = DC_AE_VARIANTS[NAME]
    torch.manual_seed(0)
    oracle = diffusers.AutoencoderDC(**diffusers_dc_kwargs(cfg)).eval()
    with torch.device("meta"):
        ours = DCAE(cfg)
    load_state_dict_strict(ours, convert_diffusers_dc_to_ours(oracle.state_dict(), cfg)).eval()
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    return ours, oracle, x


def run_ours(model, x):
    with torch.inference_mode():
        return model.decode(model.encode(x))


def run_diffusers(model, x):
    with torch.inference_mode():
        return model.decode(model.encode(x).latent).sample


@pytest.mark.benchmark(group=f"{NAME}-encode+decode-{SIZE}px-cpu-fp32")
def test_speed_ours(benchmark, pair):
    ours, _, x = pair
    out = benchmark.pedantic(run_ours, args=(ours, x), rounds=2, warmup_rounds=1)
    assert out.shape == x.shape


@pytest.mark.benchmark(group=f"{NAME}-encode+decode-{SIZE}px-cpu-fp32")
def test_speed_diffusers(benchmark, pair):
    _, oracle, x = pair
    out = benchmark.pedantic(run_diffusers, args=(oracle, x), rounds=2, warmup_rounds=1)
    assert out.shape == x.shape


def test_ours_not_slower_than_diffusers(pair, capsys):
    ours, oracle, x = pair
    a, b = run_ours(ours, x), run_diffusers(oracle, x)  # warm-up, and the same numbers
    assert ((a - b).norm() / b.norm()).item() < 1e-4
    times = {"ours": [], "diffusers": []}
    for _ in range(3):  # interleaved, so that load from other processes hits both alike
        for key, fn, model in (("ours", run_ours, ours), ("diffusers", run_diffusers, oracle)):
            start = time.perf_counter()
            fn(model, x)
            times[key].append(time.perf_counter() - start)
    ratio = min(times["ours"]) / min(times["diffusers"])
    with capsys.disabled():
        print(f"\n{NAME} {SIZE}px CPU fp32 threads={torch.get_num_threads()}: ours {min(times['ours']):.2f} s, "
              f"diffusers {min(times['diffusers']):.2f} s, ratio ours/diffusers {ratio:.3f}")
    assert ratio <= 1.05
