"""REPAIR and BatchNorm reset on module architectures: exact statistics, endpoints untouched."""

from __future__ import annotations

from dataclasses import replace

import torch

from wslviz.core import module_eval
from wslviz.core.evaluation import evaluate
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


def test_repair_gives_each_channel_the_interpolated_statistics():
    arch = resnet(False)
    a, b = two_models(arch)
    t = torch.tensor([0.25, 0.5])
    points = torch.stack([(1 - s) * a + s * b for s in t])
    fixed = repair.repair(arch, a, b, points, t, TASK)
    x = TASK.x_train[: repair.N_SAMPLES]
    key = ("conv1", 1)  # the stem conv's output channels
    _, ends = module_eval.forward(arch, torch.stack([a, b]), x, capture={key})
    _, now = module_eval.forward(arch, fixed, x, capture={key})

    def stats(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = h.movedim(2, 1).double().reshape(h.shape[0], h.shape[2], -1)
        return flat.mean(-1), flat.std(-1, correction=0)

    (mu_ab, sd_ab), (mu, sd) = stats(ends[key]), stats(now[key])
    goal_mu = (1 - t.double()).unsqueeze(1) * mu_ab[0] + t.double().unsqueeze(1) * mu_ab[1]
    goal_sd = (1 - t.double()).unsqueeze(1) * sd_ab[0] + t.double().unsqueeze(1) * sd_ab[1]
    assert torch.allclose(mu, goal_mu, atol=1e-4) and torch.allclose(sd, goal_sd, atol=1e-4)


def test_repair_of_a_model_with_itself_changes_nothing():
    arch = resnet(False)
    a, _ = two_models(arch)
    same = repair.repair(arch, a, a, a.unsqueeze(0), torch.tensor([0.5]), TASK)
    x = TASK.x_test
    assert torch.allclose(module_eval.model_outputs(arch, same, x), module_eval.model_outputs(arch, a, x)[None],
                          atol=1e-4)
