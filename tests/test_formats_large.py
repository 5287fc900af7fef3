"""A 50,000-checkpoint native zoo opens memory-mapped (no timing asserts: see benchmarks/)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.zoo import Zoo
from wslviz.formats import save_zoo

N = 50_000


@pytest.mark.slow
def test_fifty_thousand_checkpoints_open(tmp_path):
    arch = Architecture(mlp_spec([1, 33, 1]))  # 100 parameters
    assert arch.n_params == 100
    weights = torch.arange(N * 100, dtype=torch.float32).view(N, 100) / 1e6
    meta = pd.DataFrame({"model_id": np.arange(N) // 10, "epoch": np.arange(N) % 10})
    save_zoo(Zoo(name="big", metadata=meta, weights=weights, arch=arch), tmp_path / "big")
    del weights
    zoo = wv.load_zoo(tmp_path / "big")
    assert zoo.weights.shape == (N, 100) and zoo.n_models == N // 10
    for row in (0, 12_345, N - 1):
        torch.testing.assert_close(zoo.weights[row], torch.arange(row * 100, row * 100 + 100) / 1e6)
    # the copy-on-write map: writing to the opened matrix never touches the file
    zoo.weights[0, 0] = -1.0
    assert wv.load_zoo(tmp_path / "big").weights[0, 0].item() == 0.0
    sub = zoo.subset(np.arange(0, N, 1000))
    assert sub.n_checkpoints == 50 and list(sub.metadata["epoch"]) == [0] * 50
