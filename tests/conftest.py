"""Shared fixtures: small zoos built in memory (random or briefly trained), and the sample zoos."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.tasks import make_task
from wslviz.core.zoo import Zoo
from wslviz.scale.cache import load_zoo
from wslviz.ui import results

warnings.filterwarnings("ignore", category=ImportWarning)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_zoo"


@pytest.fixture(autouse=True)
def no_cost_confirmation(request, monkeypatch):
    """Pages ask before a computation estimated over a minute, and the estimate depends on the machine: a test that
    presses a button gets no question (it would be flaky) unless it tests the question itself (``asks_first``)."""
    if "asks_first" not in request.keywords:
        monkeypatch.setattr(results, "ASK_ABOVE", float("inf"))


@pytest.fixture(autouse=True)
def restore_main_module():
    """AppTest leaves ``sys.modules["__main__"]`` pointing at the last page it ran; a process started later by
    ``spawn`` (a Dask worker) would re-run that page as its main module. Each test gets the real one back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main

SMALL_CNN = {
    "input_shape": [1, 8, 8],
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
        {"type": "relu"},
        {"type": "conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 3},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "linear", "in_features": 96, "out_features": 10},
    ],
}


def random_zoo(arch: Architecture, task, n_models: int = 6, epochs=(0, 1), seed: int = 0, scale: float = 0.5) -> Zoo:
    """A zoo of random weights: ``n_models`` models x ``epochs`` checkpoints, metadata computed."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n_models * len(epochs), arch.n_params, generator=g) * scale
    rows = [{"model_id": m, "epoch": e, "seed": m, "lr": [0.01, 0.1][m % 2]} for m in range(n_models) for e in epochs]
    meta = pd.DataFrame(rows)
    if task is not None:
        from wslviz.core.evaluation import evaluate

        r = evaluate(arch, task, w)
        meta["test_loss"], meta["test_acc"] = r["loss"].numpy(), r["accuracy"].numpy()
    return Zoo(name="random", metadata=meta, weights=w, arch=arch, task=task)


@pytest.fixture(scope="session")
def moons_task():
    return make_task("moons")


@pytest.fixture(scope="session")
def digits_task():
    return make_task("digits")


@pytest.fixture(scope="session")
def mlp_arch():
    return Architecture(mlp_spec([2, 16, 16, 2]))


@pytest.fixture(scope="session")
def cnn_arch():
    return Architecture(SMALL_CNN)


@pytest.fixture(scope="session")
def random_mlp_zoo(mlp_arch, moons_task):
    return random_zoo(mlp_arch, moons_task)


@pytest.fixture(scope="session")
def random_cnn_zoo(cnn_arch, digits_task):
    return random_zoo(cnn_arch, digits_task)


def sample_zoo(name: str) -> Zoo:
    path = SAMPLE / name
    if not (path / "zoo.json").is_file():
        pytest.fail(f"sample zoo {name} is missing (run `wslviz make-zoo`)")
    return load_zoo(path)


@pytest.fixture(scope="session")
def moons_zoo():
    return sample_zoo("moons-mlp")


@pytest.fixture(scope="session")
def digits_zoo():
    return sample_zoo("digits-cnn")


@pytest.fixture(scope="session")
def spirals_zoo():
    return sample_zoo("spirals-tanh")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run the test with 1 and with 2 torch threads, restoring the count afterwards: for tests that compare code
    paths, whose kernels split their work (and may round) differently with the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)
