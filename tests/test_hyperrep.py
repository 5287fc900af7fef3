"""Hyper-representation: the contrastive loss's exact value, determinism, permutation augmentation pulling
symmetric copies together, and reconstruction improving with training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from wslviz.represent.hyperrep import HyperRepresentation, nt_xent, reconstruction_quality
from wslviz.understand.symmetry import apply_symmetry, random_symmetry


def test_nt_xent_exact_value():
    a = torch.eye(4)[:2]  # two orthogonal unit vectors; b equals a, so each row's partner has cosine 1
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0)))
    assert float(nt_xent(a, a.clone(), t)) == pytest.approx(expected, rel=1e-6)
    assert float(nt_xent(a, a.flip(0), t)) > expected  # swapped partners are worse


def test_shapes_determinism_and_errors(moons_zoo):
    w = moons_zoo.weights[moons_zoo.final_index()]
    a = HyperRepresentation(latent_dim=5, steps=40, random_state=3).fit((moons_zoo.arch, w))
    b = HyperRepresentation(latent_dim=5, steps=40, random_state=3).fit((moons_zoo.arch, w))
    za = a.transform(w)
    assert za.shape == (len(w), 5)
    np.testing.assert_array_equal(za, b.transform(w))
    assert a.inverse_transform(za).shape == w.shape and a.reconstruct(w[0]).shape == (1, w.shape[1])
    with pytest.raises(ValueError, match="latent codes"):
        a.inverse_transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="not fitted"):
        HyperRepresentation().transform(w)


def _self_vs_others(model: HyperRepresentation, arch, w: torch.Tensor) -> float:
    """Median latent distance of each model to its permuted copy, over the median distance between models."""
    z = model.transform(w)
    moved = apply_symmetry(arch, w, random_symmetry(arch, seed=11, kinds=("permutation",)))
    return float(np.median(np.linalg.norm(model.transform(moved) - z, axis=1)) / np.median(pdist(z)))


def test_permutation_augmentation_pulls_symmetric_copies_together(moons_zoo):
    arch, w = moons_zoo.arch, moons_zoo.weights[moons_zoo.final_index()]
    augmented = HyperRepresentation(steps=400).fit((arch, w))
    plain = HyperRepresentation(steps=400, permute_prob=0.0, contrastive_weight=0.0).fit((arch, w))
    ratio_aug, ratio_plain = _self_vs_others(augmented, arch, w), _self_vs_others(plain, arch, w)
    assert ratio_aug < 0.7 * ratio_plain and ratio_aug < 0.6


def test_reconstruction_improves_with_training(moons_zoo):
    from wslviz.represent.features import aligned_weights

    final = moons_zoo.subset(moons_zoo.final_index())
    w = aligned_weights(final)
    early = reconstruction_quality(HyperRepresentation(steps=5).fit((final.arch, w)), final.task, w)
    late = reconstruction_quality(HyperRepresentation(steps=600).fit((final.arch, w)), final.task, w)
    assert late["relative_l2"] < 0.8 * early["relative_l2"]
    assert late["agreement"] > early["agreement"] and late["accuracy_reconstructed"] > 0.7
    assert late["accuracy_original"] == pytest.approx(float(final.metadata["test_acc"].mean()), abs=1e-4)


@pytest.mark.parametrize("shape", ["resnet", "transformer"])
def test_permutation_views_of_module_networks_keep_the_function(shape):
    from wslviz.core.evaluation import model_outputs
    from wslviz.core.module_arch import ModuleArchitecture
    from wslviz.core.protocol import infer_layout

    arch = (ModuleArchitecture.builtin("resnet20", depth=8, width=0.25, in_channels=1, input_shape=[1, 8, 8])
            if shape == "resnet" else
            ModuleArchitecture.builtin("gpt", n_layer=1, n_head=2, d_model=8, vocab_size=12, seq_len=3, n_classes=11))
    gen = torch.Generator().manual_seed(0)
    w = arch.initial_weights().repeat(4, 1) + 0.2 * torch.randn(4, arch.n_params, generator=gen)
    for p in arch.layout:
        if p.role == "running_var":
            w[:, p.slice] = w[:, p.slice].abs() + 0.5
    model = HyperRepresentation(latent_dim=3, steps=5, permute_prob=1.0, noise=0.0).fit((arch, w))
    views = model._view(w, torch.Generator().manual_seed(1))
    assert not torch.allclose(views, w)  # every row moved ...
    x = arch.probe_inputs(32)
    # ... and computes the same function
    torch.testing.assert_close(model_outputs(arch, views, x), model_outputs(arch, w, x), atol=1e-5, rtol=1e-5)
    assert model.reconstruct(w).shape == w.shape
    layout = infer_layout(arch.unflatten(w[0]))  # weights-only: no symmetries to draw, noise views only
    only = HyperRepresentation(latent_dim=3, steps=5, permute_prob=1.0, noise=0.0).fit((layout, w))
    assert torch.equal(only._view(w, torch.Generator().manual_seed(1)), w)
