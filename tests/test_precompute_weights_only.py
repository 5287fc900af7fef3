"""``wslviz precompute`` on a weights-only zoo: what needs no forward is computed, the rest skipped with one
warning line that says why (wslviz/scale/precompute.py, ``cache_parameters``)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.protocol import infer_layout
from wslviz.core.tasks import make_task
from wslviz.core.zoo import Zoo
from wslviz.represent.features import FeatureError
from wslviz.scale.precompute import cache_parameters, compute_chunk


def weights_only_zoo() -> Zoo:
    gpt = ModuleArchitecture.builtin("gpt", n_layer=1, n_head=2, d_model=8, vocab_size=12, seq_len=3, n_classes=11)
    gen = torch.Generator().manual_seed(0)
    w = gpt.initial_weights().repeat(4, 1) + 0.1 * torch.randn(4, gpt.n_params, generator=gen)
    layout = infer_layout(gpt.unflatten(w[0]))
    assert layout.kind == "weights-only"
    meta = pd.DataFrame({"model_id": range(4), "epoch": [1] * 4})
    task = make_task({"name": "modadd", "p": 11, "seed": 0, "test_fraction": 0.5})
    return Zoo(name="weights-only", metadata=meta, weights=w, arch=layout, task=task)


def test_weights_only_precompute_skips_what_needs_a_forward_and_computes_the_rest():
    zoo = weights_only_zoo()
    with pytest.warns(UserWarning, match=r"skipping functional, aligned, evaluations: this zoo is weights only") as got:
        params = cache_parameters(zoo, ["stats", "spectral", "functional", "aligned"], evaluate=True)
    assert len(got) == 1
    assert params["features"] == ["stats", "spectral"] and params["evaluate"] is False
    out = compute_chunk(zoo, params, 0, 4)
    assert set(out) == {"stats", "spectral"} and all(len(df) == 4 for df in out.values())
    with pytest.warns(UserWarning, match="skipping functional"), pytest.raises(FeatureError, match="nothing to"):
        cache_parameters(zoo, ["functional"])
