"""Claim statements say what ran: at small scale, every claim names the reduced models, patches, latent grids, image
resolution, tokens and data of its arms' run configs, and names the paper's models and data sets only after "for
the paper's" (the paper row it stands for).

The check reads the resolved small-scale ``ClaimConfig`` of every claim row of every spec; its arms (and contrast
bases) are the runs ``configs.dependencies`` lists. The statement's part before "for the paper's" is parsed for
registry names (``dc-ae-f32c32-tiny``), factors (``f32``), patches (``p4``), latent grids (``4x4``), resolutions
(``128-px``), token counts and data-set words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from bench import artifacts, catalogue
from bench.configs import Dataset, GenerateConfig, ReconConfig, dependencies
from models import zoo

PAPER = "for the paper's"
AE_ID = re.compile(r"\b(?:dc-ae|sd-vae)-f\d+c\d+-(?:tiny|small)\b")
PHRASE = {"train": "embedded training photos", "test": "embedded held-out photos",
          "test-regions": "embedded held-out regions"}
PAPER_DATA = ("imagenet", "ffhq", "mjhq", "mapillary")  # words of data sets the small scale never runs on
@dataclass(frozen=True)
class Arm:
    """What one arm run used, read from its config."""

    autoencoder: str
    f: int
    grid: int              # latent side
    resolution: int        # image side (px)
    patch: int | None      # generate arms: the backbone's patch
    backbone: str | None   # generate arms: the diffusion backbone
    tokens: int | None     # generate arms: (grid / patch)^2
    data: tuple[Dataset, ...]


def arm_of(cfg) -> Arm:
    if isinstance(cfg, GenerateConfig):
        m = cfg.model
        f = zoo.info(m.autoencoder).spatial_compression
        g = m.resolution // f
        return Arm(m.autoencoder, f, g, m.resolution, m.patch_size, m.backbone, (g // m.patch_size) ** 2,
                   (m.dataset, cfg.reference))
    assert isinstance(cfg, ReconConfig), cfg
    f = zoo.info(cfg.model).spatial_compression
    return Arm(cfg.model, f, cfg.resolution // f, cfg.resolution, None, None, None, (cfg.dataset,))


def _ints(pattern: str, text: str) -> set[int]:
    return {int(m) for m in re.findall(pattern, text)}


def consistency_problems(statement: str, arms: list[Arm]) -> list[str]:
    """What the statement's own part names that none of its arms used."""
    ours, out = statement.split(PAPER)[0], []
    named = {
        "model": (set(AE_ID.findall(ours)), {a.autoencoder for a in arms}),
        "factor": (_ints(r"(?<![A-Za-z])f(\d+)", ours), {a.f for a in arms}),
        "patch": (_ints(r"\bp(\d+)\b", ours), {a.patch for a in arms if a.patch is not None}),
        "latent grid": (_ints(r"\b(\d+)x\1\b", ours), {a.grid for a in arms}),
        "resolution": (_ints(r"\b(\d+)[- ]px\b", ours), {a.resolution for a in arms}),
        "token count": (_ints(r"\b(\d+) tokens\b", ours), {a.tokens for a in arms if a.tokens is not None}),
    }
    out += [f"names {what} {sorted(extra)} that no arm used (arms: {sorted(used)})"
            for what, (said, used) in named.items() if (extra := said - used)]
    for ae, p in re.findall(r"\b((?:dc-ae|sd-vae)-f\d+c\d+-\w+) p(\d+)\b", ours):
        if (ae, int(p)) not in {(a.autoencoder, a.patch) for a in arms}:
            out.append(f"names {ae} p{p}; no arm runs {ae} at patch {p}")
    used_folders = {d.name for a in arms for d in a.data if d.kind == "folder"}
    out += [f"names a {word} data set before {PAPER!r}, which no arm used" for word in PAPER_DATA
            if word in ours.lower() and not any(word in f for f in used_folders)]
    return out


def completeness_problems(statement: str, arms: list[Arm]) -> list[str]:
    """What its arms used that the statement's own part does not name."""
    ours, out = statement.split(PAPER)[0], []
    if PAPER not in statement:
        out.append(f"does not say which paper row it stands for ({PAPER!r} ...)")
    for a in arms:
        wanted = [a.autoencoder, f"{a.grid}x{a.grid}", f"{a.resolution}-px"]
        wanted += [f"{a.autoencoder} p{a.patch}", a.backbone, f"{a.tokens} tokens"] if a.patch is not None else []
        wanted += [PHRASE[d.name] for d in a.data if d.kind == "embedded"]
        out += [f"does not name {w!r}" for w in wanted if w not in ours]
    return sorted(set(out))


def _small_claims() -> list:
    """(spec id, statement, arms) of every claim row run at small scale, each statement once."""
    seen, out = set(), []
    for name in artifacts.names():
        for spec in artifacts.load(name).SPECS.values():
            for row in spec.rows:
                if row.run is None or row.run.eval != "claim" or not row.run.runs_at("small"):
                    continue
                cfg = row.run.resolve("small")
                if cfg.statement not in seen:
                    seen.add(cfg.statement)
                    out.append(pytest.param(spec.id, cfg.statement, [arm_of(c) for c in dependencies(cfg)],
                                            id=f"{spec.id}: {cfg.statement[:60]}"))
    return out


CLAIMS = _small_claims()


def test_there_are_claims_to_check():
    assert len(CLAIMS) >= 20 and {p.values[0] for p in CLAIMS} >= {"table1", "table2", "table4", "figure2"}


@pytest.mark.parametrize("spec_id, statement, arms", CLAIMS)
def test_a_small_claim_names_nothing_its_arms_did_not_use(spec_id, statement, arms):
    assert not consistency_problems(statement, arms), statement


@pytest.mark.parametrize("spec_id, statement, arms", CLAIMS)
def test_a_small_claim_names_the_models_patches_grids_and_data_that_ran(spec_id, statement, arms):
    assert not completeness_problems(statement, arms), statement


def test_the_reduced_autoencoders_factors_are_the_registry_s():
    """Table 1's statements take the latent grid from ``SMALL_F``: it must agree with the registry."""
    assert catalogue.SMALL_F == {name: zoo.info(name).spatial_compression for name in catalogue.SMALL_F}


def test_the_check_rejects_statements_that_name_the_paper_s_models_or_data():
    """The labels these rows had: paper names for reduced runs (UViT-S's DC-AE-f64 p1 vs SD-VAE-f8 p8 ran
    dc-ae-f32c32-tiny p1 vs sd-vae-f8c4-tiny p4), and 'FFHQ' for runs on the embedded photos."""
    from bench.artifacts import table4
    uvit = [arm_of(c) for c in dependencies(catalogue.CLAIMS_OF["UViT-S"][0].run.resolve("small"))]
    old = "UViT-S: DC-AE-f64 p1 beats SD-VAE-f8 p8 at equal tokens (KID vs the training crops)"
    assert {"names factor [64] that no arm used (arms: [8, 32])",
            "names patch [8] that no arm used (arms: [1, 4])"} <= set(consistency_problems(old, uvit))
    assert "does not name 'dc-ae-f32c32-tiny p1'" in completeness_problems(old, uvit)
    ffhq = [arm_of(c) for c in dependencies(table4.CLAIMS[0].run.resolve("small"))]
    old = "FFHQ (unconditional): DiT-S DC-AE-f32 p1 beats SD-VAE-f8 p4 at equal tokens (KID vs the training crops)"
    assert any("ffhq" in p for p in consistency_problems(old, ffhq))
