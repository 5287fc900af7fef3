"""Ground truths for permutation specs derived from the torch.fx graph (ResNet, VGG, transformer shapes).

* every element of the derived group keeps the function (to 1e-5, relative to the output scale);
* a planted element is undone exactly by weight matching in 100 of 100 trials;
* a residual network whose spec forgot the skip merge fails the first test, so that test can tell.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from wslviz.core.evaluation import model_outputs
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.permutation import PermutationSpec
from wslviz.understand import heads
from wslviz.understand import symmetry as S
from wslviz.understand.align import activation_matching, weight_matching

SHAPES = {
    "resnet": lambda: ModuleArchitecture.builtin("resnet20", depth=8, width=0.25, in_channels=1, input_shape=[1, 8, 8]),
    # stage widths set directly, as digits-resnet's: the stage-1 stream as wide as the stem, stage 3 not doubled
    "resnet, channels": lambda: ModuleArchitecture.builtin("resnet20", depth=8, channels=[6, 6, 10], in_channels=1,
                                                           input_shape=[1, 8, 8]),
    "vgg": lambda: ModuleArchitecture.builtin("vgg11", width=0.03125, image_size=8),
    "transformer": lambda: ModuleArchitecture.builtin("gpt", n_layer=1, n_head=2, d_model=8, vocab_size=11,
                                                      n_classes=10),
}


@pytest.fixture(scope="module", params=sorted(SHAPES))
def arch(request):
    return SHAPES[request.param]()


def random_weights(arch, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, arch.n_params, generator=gen)
    for p in arch.layout:
        if p.role == "running_var":
            w[:, p.slice] = 0.5 + torch.rand(n, p.numel, generator=gen)
    return w


def relative_gap(arch, a: torch.Tensor, b: torch.Tensor) -> float:
    x = arch.probe_inputs(64)
    out_a = model_outputs(arch, a, x)
    return float((out_a - model_outputs(arch, b, x)).abs().max() / out_a.abs().max().clamp_min(1.0))


def test_spec_shapes():
    resnet, vgg, gpt = (SHAPES[k]() for k in ("resnet", "vgg", "transformer"))
    assert [g.name.startswith("residual") for g in resnet.perm_spec.groups] == [True, False, False, True, False, True]
    assert len(vgg.perm_spec.groups) == 8 and all(g.heads == 1 for g in vgg.perm_spec.groups)
    attn = [g for g in gpt.perm_spec.groups if g.heads > 1]
    assert len(attn) == 2 and attn[0].tie == attn[1].tie != ""
    fixed = {(f.name, f.axis) for f in gpt.perm_spec.fixed}
    assert ("head.weight", 0) in fixed and ("tok_emb.weight", 0) in fixed
    assert ("features.0.weight", 1, "network input") in {(f.name, f.axis, f.reason) for f in vgg.perm_spec.fixed}


def test_every_group_element_keeps_the_function(arch):
    w = random_weights(arch, 4, seed=1)
    for seed in range(10):
        g = S.random_symmetry(arch, seed=seed)
        moved = S.apply_symmetry(arch, w, g)
        assert (moved - w).norm() > 1.0
        assert relative_gap(arch, w, moved) < 1e-5


def test_planted_elements_are_undone_exactly_100_of_100(arch):
    recovered = 0
    for r in range(4):
        ref = random_weights(arch, 1, seed=10 + r)[0]
        planted = torch.stack([S.apply_symmetry(arch, ref, S.random_symmetry(arch, seed=1000 * r + s))
                               for s in range(25)])
        back = weight_matching(arch, ref, planted)
        recovered += int((back == ref).all(1).sum())
    assert recovered == 100


def test_attention_elements_are_block_structured_and_tied():
    arch = SHAPES["transformer"]()
    spec = arch.perm_spec
    attn = [i for i, g in enumerate(spec.groups) if g.heads > 1]
    for seed in range(10):
        g = S.random_symmetry(arch, seed=seed)
        head_perms = []
        for i in attn:
            blocks = g.perms[i].reshape(spec.groups[i].heads, -1)
            d = spec.groups[i].head_size
            assert (blocks // d == blocks[:, :1] // d).all()  # each slot takes one whole head
            head_perms.append(blocks[:, 0] // d)
        assert torch.equal(head_perms[0], head_perms[1])  # queries/keys and values move their heads together
    expected = sum(torch.lgamma(torch.tensor(g.size + 1.0)).item() for g in spec.groups if g.heads == 1)
    expected += 2 * 2 * torch.lgamma(torch.tensor(5.0)).item() + torch.lgamma(torch.tensor(3.0)).item()
    assert S.group_size_log10(arch) == pytest.approx(expected / torch.log(torch.tensor(10.0)).item())


def test_canonical_form_is_invariant_for_attention():
    arch = SHAPES["transformer"]()
    w = random_weights(arch, 1, seed=3)[0]
    c = S.canonicalize(arch, w)
    for seed in range(5):
        moved = S.apply_symmetry(arch, w, S.random_symmetry(arch, seed=seed))
        assert torch.allclose(S.canonicalize(arch, moved), c, atol=1e-6)
    assert relative_gap(arch, w, c) < 1e-5


def test_structured_assignment_is_exact_on_a_planted_block_permutation():
    spec = SHAPES["transformer"]().perm_spec
    groups = [g for g in spec.groups if g.heads > 1]
    gen = torch.Generator().manual_seed(0)
    planted = heads.draw(groups, gen)
    costs = []
    for g, p in zip(groups, planted, strict=True):
        feats = torch.randn(g.size, 6, generator=gen)
        costs.append((feats @ feats[p].T).unsqueeze(0))  # the other's unit k is the reference's unit p[k]
    found, better = heads.assign(costs, groups)
    assert bool(better[0])
    assert all(torch.equal(f[0], torch.argsort(p)) for f, p in zip(found, planted, strict=True))


def test_activation_matching_undoes_planted_attention_elements():
    """Heads move as wholes and the tied query/key and value groups share their head order, so activation
    matching has to solve each tie class at once (block-structured): it recovers the planted element exactly."""
    arch = SHAPES["transformer"]()
    task = SimpleNamespace(x_train=arch.probe_inputs(256))  # activation matching reads the training inputs only
    for seed in range(10):
        ref = random_weights(arch, 1, seed=20 + seed)[0]
        planted = S.random_symmetry(arch, seed=500 + seed)
        back, g = activation_matching(arch, task, ref, S.apply_symmetry(arch, ref, planted), n_samples=256,
                                      return_perm=True)
        assert torch.equal(back, ref)
        assert all(torch.equal(p, q) for p, q in zip(g.perms, S.inverse(planted).perms, strict=True))


class ForgotSkip:
    """The ResNet with a hand-written spec that forgot the skip merge: the residual stream of stage 1 is split
    back into the stem's channels and the first block's output channels, each permuted on its own."""

    def __init__(self, arch: ModuleArchitecture):
        self.arch = arch
        spec = arch.perm_spec
        stream = spec.groups[0]
        stem = tuple(r for r in stream.refs if r.name.startswith(("conv1.", "bn1.", "layer1.0.conv1.")))
        block = tuple(r for r in stream.refs if r not in stem)
        groups = (replace(stream, name="stem", refs=stem), replace(stream, name="block", refs=block),
                  *spec.groups[1:])
        self.perm_spec = PermutationSpec(groups, spec.n_params, spec.fixed)

    def __getattr__(self, name):
        return getattr(self.arch, name)


def test_a_spec_without_the_skip_merge_fails_the_function_test():
    arch = SHAPES["resnet"]()
    broken = ForgotSkip(arch)
    w = random_weights(arch, 2, seed=5)
    gaps = [relative_gap(arch, w, S.apply_symmetry(broken, w, S.random_symmetry(broken, seed=s))) for s in range(5)]
    assert min(gaps) > 1e-2  # far outside the 1e-5 that every element of the derived group keeps
