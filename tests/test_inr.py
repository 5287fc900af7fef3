"""INRs: rendering equals a module forward on the coordinate grid, batched fitting equals fitting alone, the
SIREN initialisation's bounds, weight-space paths, and the image-grid figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_formats import write_inr

import wslviz as wv
from wslviz.core import inr
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.plots import inr as iplots

SIREN = Architecture(mlp_spec([2, 12, 1], "sin", w0=10.0))


def test_is_inr():
    assert inr.is_inr(SIREN) and inr.is_inr(Architecture(mlp_spec([2, 8, 8, 3], "sin")))
    assert not inr.is_inr(Architecture(mlp_spec([2, 16, 2])))  # a 2D classifier, not an image
    assert not inr.is_inr(Architecture(mlp_spec([2, 16, 3], "tanh")))


def test_render_is_the_module_on_the_grid():
    w = inr.siren_init(SIREN, [0, 1, 2])
    images = inr.render_inrs(SIREN, w, size=9, offset=0.5)
    grid = inr.coordinate_grid(9)
    assert grid[1].tolist() == [-1.0, -0.75] and grid[9].tolist() == [-0.75, -1.0]  # row-major, "ij"
    for b in range(3):
        with torch.no_grad():
            expected = (SIREN.build(w[b])(grid)[:, 0] + 0.5).clamp(0, 1).reshape(9, 9)
        np.testing.assert_allclose(images[b], expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(inr.render_inrs(SIREN, w[0], size=9), images[0], atol=1e-7)  # one vector, no batch axis
    xy = inr.render_inrs(SIREN, w[:1], size=9, indexing="xy")[0]
    np.testing.assert_allclose(xy, images[0].T, atol=1e-6)


def test_siren_init_bounds_and_seeds():
    w = inr.siren_init(SIREN, [3, 4, 3])
    d = SIREN.unflatten(w)
    assert d["0.weight"].abs().max() <= 1 / 2  # first layer: 1 / fan_in
    assert d["2.weight"].abs().max() <= np.sqrt(6 / 12) / 10.0  # later: sqrt(6 / fan_in) / w0
    assert torch.equal(w[0], w[2]) and not torch.equal(w[0], w[1])


def test_batched_fit_matches_fitting_alone_and_fits():
    from sklearn.datasets import load_digits

    images, labels = inr.resampled_digits(8)  # at the native size, resampling is the identity
    assert images.shape == (1797, 8, 8) and labels[:3].tolist() == [0, 1, 2]
    np.testing.assert_allclose(images.numpy(), load_digits().images / 16.0, atol=1e-6)
    big, _ = inr.resampled_digits(15)  # corner-aligned: the corners and the centres of 2x2 blocks are kept
    np.testing.assert_allclose(big[:, ::2, ::2].numpy(), images.numpy(), atol=1e-6)
    subset = images[:6]
    together = inr.fit_inrs(SIREN, subset, [10, 11, 12, 13, 14, 15], steps=60, chunk_size=4)
    alone = torch.cat([inr.fit_inrs(SIREN, subset[i:i + 1], [10 + i], steps=60) for i in (0, 5)])
    torch.testing.assert_close(together[[0, 5]], alone, rtol=1e-4, atol=1e-5)
    before = inr.psnr(SIREN, inr.siren_init(SIREN, range(10, 16)), subset)
    after = inr.psnr(SIREN, together, subset)
    assert (after > before + 5).all()  # 60 Adam steps on 8x8 images: from ~8 dB to ~15 dB


def test_render_path_endpoints_and_rows(tmp_path):
    a, b = inr.siren_init(SIREN, [0, 1])
    strip = inr.render_path(SIREN, a, b, [0.0, 0.5, 1.0], size=7)
    np.testing.assert_allclose(strip[0], inr.render_inrs(SIREN, a, size=7), atol=1e-6)
    np.testing.assert_allclose(strip[2], inr.render_inrs(SIREN, b, size=7), atol=1e-6)
    write_inr(tmp_path / "inrs", labels=(3, 7))  # DWSNets-style folders: w0 30, offset 0.5, 28x28 by default
    zoo = wv.load_zoo(tmp_path / "inrs")
    images = inr.render_rows(zoo, [0, 1])
    assert images.shape == (2, 28, 28) and (images >= 0).all() and (images <= 1).all()


def test_image_grid_and_strips():
    images = np.random.default_rng(0).random((5, 4, 4))
    meta = pd.DataFrame({"label": [3, 1, 4, 1, 5], "psnr": [30.0, 31.5, np.nan, 29.0, 28.0]})
    caps = iplots.captions(meta, [0, 2])
    assert caps == ["#0 · 3 · 30.0 dB", "#2 · 4"]
    fig = iplots.image_grid(images, iplots.captions(meta, range(5)), columns=3)
    z = np.array(fig.data[0].z, dtype=float)
    assert z.shape == (2 * 5 - 1, 3 * 5 - 1)  # 2 rows x 3 columns of 4x4 tiles, 1-pixel gaps
    np.testing.assert_allclose(z[5:9, 0:4], images[3])
    assert np.isnan(z[4]).all() and len(fig.layout.annotations) == 5
    strips = iplots.path_strips({"naive": images[:3], "aligned": images[2:]}, [0.0, 0.5, 1.0])
    assert {a.text for a in strips.layout.annotations} == {"naive", "aligned", "t=0.00", "t=0.50", "t=1.00"}
    with pytest.raises(ValueError, match="one image per t"):
        iplots.path_strips({"naive": images[:2]}, [0.0, 0.5, 1.0])
