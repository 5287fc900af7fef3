"""REPAIR and BatchNorm reset on module architectures: exact statistics, endpoints untouched."""

from __future__ import annotations

from dataclasses import replace

import torch

from wslviz.core import module_eval
from wslviz.core.evaluation import evaluate, model_outputs
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.tasks import make_task
from wslviz.understand import repair
from wslviz.understand.landscape import interpolate

_DIGITS = make_task("digits")
TASK = replace(_DIGITS, x_train=_DIGITS.x_train[:256], y_train=_DIGITS.y_train[:256], x_test=_DIGITS.x_test[:128],
               y_test=_DIGITS.y_test[:128])  # small, so that the suite stays fast


def resnet(norm: bool) -> ModuleArchitecture:
    return ModuleArchitecture.builtin("resnet20", depth=8, width=0.25, in_channels=1, norm=norm, input_shape=[1, 8, 8])


def two_models(arch: ModuleArchitecture) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    w = arch.initial_weights().repeat(2, 1)
    for p in arch.layout:
        if p.role == "running_var":
            w[:, p.slice] = 0.5 + torch.rand(2, p.numel, generator=gen)
        elif p.role != "running_mean":
            w[:, p.slice] += 0.2 * torch.randn(2, p.numel, generator=gen)
    return w


def _channel_stats(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = h.movedim(2, 1).double().reshape(h.shape[0], h.shape[2], -1)
    return flat.mean(-1), flat.std(-1, correction=0)


def test_default_is_reset_for_batchnorm_networks_only():
    assert repair.default_method(resnet(True)) == "reset"
    assert repair.default_method(resnet(False)) == "none"


def test_interpolation_keeps_the_endpoints_and_resets_the_inside():
    arch = resnet(True)
    a, b = two_models(arch)
    curve = interpolate(arch, TASK, a, b, steps=5)
    own = evaluate(arch, TASK, torch.stack([a, b]))["loss"]
    assert abs(curve["loss"].iloc[0] - float(own[0])) < 1e-5 and abs(curve["loss"].iloc[-1] - float(own[1])) < 1e-5
    plain = interpolate(arch, TASK, a, b, steps=5, repair="none")
    mid = 0.5 * (a + b)
    reset = repair.reset_batchnorm(arch, mid, TASK)
    assert abs(curve["loss"].iloc[2] - float(evaluate(arch, TASK, reset)["loss"])) < 1e-5
    assert curve["loss"].iloc[2] != plain["loss"].iloc[2]


def _repaired_with_interpolated_statistics(arch: ModuleArchitecture, t: torch.Tensor, keys: set,
                                           atol: float) -> torch.Tensor:
    """REPAIR two random models' interpolations at ``t``; assert each captured ``(node, axis)`` of ``keys`` has the
    endpoints' channel means and standard deviations interpolated; return the repaired points."""
    a, b = two_models(arch)
    points = torch.stack([(1 - s) * a + s * b for s in t])
    fixed = repair.repair(arch, a, b, points, t, TASK)
    x = TASK.x_train[: repair.N_SAMPLES]
    _, ends = module_eval.forward(arch, torch.stack([a, b]), x, capture=keys)
    _, now = module_eval.forward(arch, fixed, x, capture=keys)
    tt = t.double().unsqueeze(1)
    for key in keys:
        (mu_ab, sd_ab), (mu, sd) = _channel_stats(ends[key]), _channel_stats(now[key])
        assert torch.allclose(mu, (1 - tt) * mu_ab[0] + tt * mu_ab[1], atol=atol), key
        assert torch.allclose(sd, (1 - tt) * sd_ab[0] + tt * sd_ab[1], atol=atol), key
    return fixed


def test_repair_gives_each_channel_the_interpolated_statistics():
    _repaired_with_interpolated_statistics(resnet(False), torch.tensor([0.25, 0.5]), {("conv1", 1)}, atol=1e-4)


def test_repair_of_a_model_with_itself_changes_nothing():
    arch = resnet(False)
    a, _ = two_models(arch)
    same = repair.repair(arch, a, a, a.unsqueeze(0), torch.tensor([0.5]), TASK)
    x = TASK.x_test
    assert torch.allclose(model_outputs(arch, same, x), model_outputs(arch, a, x)[None],
                          atol=1e-4)


def test_repair_on_batchnorm_gives_every_batchnorm_output_the_interpolated_statistics():
    arch = resnet(True)
    keys = {(n, 1) for n in ("bn1", "layer1_0_bn1", "layer1_0_bn2", "layer2_0_bn2", "layer3_0_bn1",
                             "layer3_0_downsample_1")}  # BatchNorm outputs early, in the residual stream, and late
    fixed = _repaired_with_interpolated_statistics(arch, torch.tensor([0.3, 0.5]), keys, atol=1e-3)
    # the BatchNorm running statistics of the result are its own data's (the reset is part of REPAIR)
    torch.testing.assert_close(repair.reset_batchnorm(arch, fixed, TASK), fixed, atol=1e-4, rtol=1e-4)


def test_repair_is_the_reset_plus_a_correction_and_an_option_of_interpolation():
    arch = resnet(True)
    a, b = two_models(arch)
    curves = {m: interpolate(arch, TASK, a, b, steps=3, repair=m)["loss"].to_numpy() for m in repair.METHODS}
    for m in repair.METHODS:  # the endpoints are the models themselves whatever the correction
        assert abs(curves[m][0] - curves["none"][0]) < 1e-6 and abs(curves[m][-1] - curves["none"][-1]) < 1e-6
    assert curves["repair"][1] != curves["reset"][1]
