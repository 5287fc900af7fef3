"""Loss landscapes: ground truths (endpoints, self-barriers, plane coordinates, filter norms, planar trajectories)
and the Git Re-Basin anchor on the moons sample zoo.

A model evaluated at another position of a batch, or through another path (a plane's affine first layer), rounds
differently: such numbers are compared to float32 rounding (:mod:`rounding`), accuracies up to the predictions
whose two largest logits tie to rounding. Marked ``kernels`` where they compare such paths: ``make test`` runs
these again under ``ATEN_CPU_CAPABILITY=default``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from rounding import assert_accuracy_close, fragile_predictions, network_terms, tolerance

import wslviz as wv
from wslviz.core.arch import Architecture
from wslviz.core.evaluation import model_outputs
from wslviz.plots import landscape as P
from wslviz.understand import curves as C
from wslviz.understand import landscape as L
from wslviz.understand import surfaces as S

TOL = 1e-5


def _models(arch, n, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, arch.n_params, generator=g) * scale


def _assert_accuracy_agrees(arch, task, weights, got, expected, split="test"):
    """Accuracies of ``weights`` [B, P] computed two ways: equal but for predictions rounding could flip."""
    x = task.split(split)[0]
    assert_accuracy_close(got, expected, model_outputs(arch, weights, x), network_terms(arch, len(x)))


@pytest.fixture(scope="module")
def trained(moons_zoo):
    """Two final checkpoints of independently trained, well-trained moons MLPs."""
    fin = moons_zoo.final_index()
    acc = moons_zoo.metadata["test_acc"].to_numpy()[fin]
    rows = fin[np.argsort(-acc)[:2]]
    return moons_zoo, moons_zoo.weights[rows[0]].clone(), moons_zoo.weights[rows[1]].clone()


# ------------------------------------------------------------------ paths
def test_t_grid_holds_both_endpoints_exactly():
    for steps, rng in [(25, (0.0, 1.0)), (25, (-0.5, 1.5)), (10, (-0.5, 1.5)), (7, (-0.3, 1.0)), (2, (0.0, 1.0))]:
        t = L.t_grid(steps, rng)
        assert 0.0 in t and 1.0 in t
        assert t[0] == rng[0] and t[-1] == rng[1]
        assert np.all(np.diff(t) > 0)
        assert steps <= len(t) <= steps + 2
    assert len(L.t_grid(25, (-0.5, 1.5))) == 25  # 0 and 1 fall on this grid (up to rounding): no extras
    with pytest.raises(ValueError, match="contain"):
        L.t_grid(10, (0.2, 1.0))
    with pytest.raises(ValueError, match="at least 2"):
        L.t_grid(1)


@pytest.mark.kernels
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_curve_endpoints_equal_the_models_own_evaluation(which, mlp_arch, moons_task, cnn_arch, digits_task):
    arch, task = (mlp_arch, moons_task) if which == "mlp" else (cnn_arch, digits_task)
    a, b = _models(arch, 2, seed=1)
    own = wv.evaluate(arch, task, torch.stack([a, b]))
    for rng in [(0.0, 1.0), (-0.5, 1.5)]:
        curve = wv.interpolate(arch, task, a, b, steps=13, t_range=rng)
        assert list(curve.columns) == ["t", "loss", "accuracy"]
        at0, at1 = curve[curve.t == 0.0].iloc[0], curve[curve.t == 1.0].iloc[0]
        assert at0.loss == pytest.approx(float(own["loss"][0]), rel=TOL)
        assert at1.loss == pytest.approx(float(own["loss"][1]), rel=TOL)
        _assert_accuracy_agrees(arch, task, torch.stack([a, b]), [at0.accuracy, at1.accuracy], own["accuracy"])
    mid = wv.evaluate(arch, task, (0.5 * a + 0.5 * b).unsqueeze(0))
    curve = wv.interpolate(arch, task, a, b, steps=3)
    assert curve.loss.iloc[1] == pytest.approx(float(mid["loss"][0]), rel=TOL)


@pytest.mark.kernels
def test_barrier_of_a_model_with_itself_is_zero(mlp_arch, moons_task, cnn_arch, digits_task):
    """Every point of the path is exactly ``a``, so the barriers are 0 up to rounding: each copy of ``a`` sits at
    another position of the evaluated batch, where the matrix kernels may round differently."""
    for arch, task in [(mlp_arch, moons_task), (cnn_arch, digits_task)]:
        a = _models(arch, 1, seed=3)[0]
        curve = wv.interpolate(arch, task, a, a, steps=9, t_range=(-0.5, 1.5))
        assert torch.equal(L.line_points(a, a, curve.t.to_numpy(copy=True)), a.expand(len(curve), -1))
        tol = tolerance(network_terms(arch, len(task.x_test))) * curve.loss.max()
        assert np.ptp(curve.loss) <= tol
        assert 0.0 <= wv.loss_barrier(curve) <= tol
        flips = int(fragile_predictions(model_outputs(arch, a.unsqueeze(0), task.x_test), network_terms(arch))[0])
        assert 0.0 <= L.accuracy_barrier(curve) <= flips / len(task.x_test)


def test_barrier_arithmetic_on_a_known_curve():
    curve = pd.DataFrame({"t": [-0.5, 0.0, 0.25, 0.5, 1.0, 1.5], "loss": [50.0, 1.0, 2.0, 3.0, 2.0, 99.0],
                          "accuracy": [0.0, 0.9, 0.5, 0.6, 0.7, 0.0]})
    # chord at 0.25: 1.25 -> 0.75; at 0.5: 1.5 -> 1.5 (max); extrapolated points are ignored
    assert L.loss_barrier(curve) == pytest.approx(1.5)
    # accuracy chord at 0.25: 0.85 - 0.5 = 0.35; at 0.5: 0.8 - 0.6 = 0.2
    assert L.accuracy_barrier(curve) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="t = 0 and t = 1"):
        L.loss_barrier(curve[curve.t != 0.0])


def test_aligned_path_to_a_permuted_copy_is_flat(trained):
    zoo, a, _ = trained
    g = wv.random_symmetry(zoo.arch, seed=7)
    a_perm = wv.apply_symmetry(zoo.arch, a, g)
    curves = L.paths(zoo.arch, zoo.task, a, a_perm, methods=("naive", "weight", "activation"), steps=11)
    assert list(curves.method.unique()) == ["naive", "weight", "activation"]
    bars = L.barriers(curves).set_index("method")
    assert bars.loc["weight", "loss_barrier"] < 1e-4
    assert bars.loc["activation", "loss_barrier"] < 1e-4
    assert bars.loc["naive", "loss_barrier"] > 0.05  # the permuted copy is far away in weight space
    # all three paths start at the same model and end at the same function
    ends = curves[curves.t == 1.0].loss.to_numpy()
    assert np.allclose(ends, ends[0], rtol=1e-4)


@pytest.mark.kernels
def test_pair_barriers_and_matrix_agree_with_single_curves(trained, mlp_arch, moons_task):
    zoo, a, b = trained
    w = torch.stack([a, b, _models(mlp_arch, 1, seed=5)[0] * 0.1 + a])
    bars = L.pair_barriers(zoo.arch, zoo.task, w[:2], w[1:], steps=11)
    for k in range(2):
        curve = wv.interpolate(zoo.arch, zoo.task, w[k], w[k + 1], steps=11)
        assert bars.loss_barrier[k] == pytest.approx(wv.loss_barrier(curve), rel=1e-4, abs=1e-6)
        assert bars.accuracy_barrier[k] == pytest.approx(L.accuracy_barrier(curve), abs=1e-6)
    m = L.barrier_matrix(zoo.arch, zoo.task, w, steps=11)
    assert np.allclose(m["loss"], m["loss"].T) and np.all(np.diag(m["loss"]) == 0)
    curve = wv.interpolate(zoo.arch, zoo.task, w[0], w[2], steps=11)
    assert m["loss"][0, 2] == pytest.approx(wv.loss_barrier(curve), rel=1e-4, abs=1e-6)
    aligned = L.barrier_matrix(zoo.arch, zoo.task, w, method="weight", steps=11)
    b_aligned = wv.weight_matching(zoo.arch, a, b)
    curve = wv.interpolate(zoo.arch, zoo.task, a, b_aligned, steps=11)
    assert aligned["loss"][0, 1] == pytest.approx(wv.loss_barrier(curve), rel=1e-4, abs=1e-6)


def test_progress_covers_alignment_and_evaluation(trained):
    zoo, a, b = trained
    w = torch.stack([a, b, zoo.weights[zoo.final_index()[0]]])
    calls: list[tuple[int, int]] = []
    L.barrier_matrix(zoo.arch, zoo.task, w, method="weight", steps=5, progress=lambda d, t: calls.append((d, t)))
    assert {t for _, t in calls} == {2 + 3 * 5}  # two alignments, three paths of five points
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[0] == 1 and done[-1] == 17


# ------------------------------------------------------------------ planes
@pytest.mark.kernels
@pytest.mark.parametrize("method", ["naive", "weight"])
def test_plane_coordinates_reproduce_the_three_models(method, trained, moons_zoo):
    zoo, a, b = trained
    c = zoo.weights[zoo.final_index()[0]]
    s = S.plane(zoo.arch, zoo.task, a, b, c, resolution=9, margin=0.25, method=method)
    assert s.loss.shape == (9, 9) and s.accuracy.shape == (9, 9)
    assert s.points["a"] == (0.0, 0.0)
    assert s.points["b"][1] == 0.0
    coords = np.array([s.points[k] for k in "abc"])
    at_points = wv.evaluate(zoo.arch, zoo.task, s.weights_at(coords))
    own = wv.evaluate(zoo.arch, zoo.task, torch.stack([a, b, c]))  # alignment keeps the function
    assert torch.allclose(at_points["loss"], own["loss"], rtol=1e-4, atol=1e-5)
    _assert_accuracy_agrees(zoo.arch, zoo.task, torch.stack([a, b, c]), at_points["accuracy"], own["accuracy"])
    if method == "naive":
        assert torch.allclose(s.weights_at(coords), torch.stack([a, b, c]), atol=1e-5)
        assert s.points["b"][0] == pytest.approx(float((b - a).norm()), rel=1e-6)
    # the grid covers the three points with a margin on every side
    assert s.x.min() < coords[:, 0].min() and s.x.max() > coords[:, 0].max()
    assert s.y.min() < coords[:, 1].min() and s.y.max() > coords[:, 1].max()
    # a grid value is the evaluation of the weights at that grid point
    one = wv.evaluate(zoo.arch, zoo.task, s.weights_at([s.x[3], s.y[5]]).unsqueeze(0))
    assert s.loss[5, 3] == pytest.approx(float(one["loss"][0]), rel=1e-4)


def test_plane_directions_are_orthonormal_and_collinear_models_are_refused(mlp_arch):
    a, b, c = _models(mlp_arch, 3, seed=2)
    d, _ = S.plane_basis(a, b, c)
    assert torch.allclose(d @ d.T, torch.eye(2), atol=1e-5)
    with pytest.raises(ValueError, match="collinear"):
        S.plane_basis(a, b, a + 2.0 * (b - a))
    with pytest.raises(ValueError, match="identical"):
        S.plane_basis(a, a, c)


# ------------------------------------------------------------------ random directions
BN_MLP = {"input_shape": [2], "layers": [
    {"type": "linear", "in_features": 2, "out_features": 8}, {"type": "batchnorm", "num_features": 8},
    {"type": "relu"}, {"type": "linear", "in_features": 8, "out_features": 2}]}


@pytest.mark.parametrize("which", ["cnn", "bn"])
def test_filter_normalisation(which, cnn_arch):
    arch = cnn_arch if which == "cnn" else Architecture(BN_MLP)
    w = _models(arch, 1, seed=4)[0]
    if which == "bn":
        w[arch.layout[2].slice] = 0.0  # running mean
        w[arch.layout[3].slice] = 1.0  # running var
    d = S.filter_normalized_directions(arch, w, n=2, seed=11)
    assert d.shape == (2, arch.n_params)
    for p in arch.layout:
        part = d[:, p.slice]
        if p.role == "weight" and arch.layers[p.layer]["type"] in ("linear", "conv2d"):
            dn = part.reshape(2, p.shape[0], -1).norm(dim=-1)
            wn = w[p.slice].reshape(1, p.shape[0], -1).norm(dim=-1)
            assert torch.allclose(dn, wn.expand_as(dn), rtol=1e-5)
        else:  # biases, normalisation parameters and statistics do not move
            assert torch.all(part == 0), p.name
    assert torch.equal(d, S.filter_normalized_directions(arch, w, n=2, seed=11))
    assert not torch.allclose(d, S.filter_normalized_directions(arch, w, n=2, seed=12))
    assert not torch.allclose(d[0], d[1])


@pytest.mark.kernels
def test_random_plane_and_line_around_a_model(trained):
    zoo, a, _ = trained
    s = S.random_plane(zoo.arch, zoo.task, a, resolution=7, span=0.5, seed=3)
    assert s.loss.shape == (7, 7) and s.x[3] == 0.0 and s.y[3] == 0.0
    own = wv.evaluate(zoo.arch, zoo.task, a.unsqueeze(0))
    assert s.loss[3, 3] == pytest.approx(float(own["loss"][0]), rel=TOL)
    again = S.random_plane(zoo.arch, zoo.task, a, resolution=7, span=0.5, seed=3)
    assert np.array_equal(s.loss, again.loss) and torch.equal(s.directions, again.directions)
    other = S.random_plane(zoo.arch, zoo.task, a, resolution=7, span=0.5, seed=4)
    assert not np.allclose(s.loss, other.loss)
    # the minimum of a trained model's neighbourhood: the centre beats the far corners
    assert s.loss[3, 3] < s.loss[[0, 0, -1, -1], [0, -1, 0, -1]].min()
    line = S.random_line(zoo.arch, zoo.task, a, steps=7, span=0.5, seed=3)
    assert np.allclose(line.loss, s.loss[3], rtol=1e-4)  # the line is the plane's x axis
    assert line.loss[line.alpha == 0.0].iloc[0] == pytest.approx(float(own["loss"][0]), rel=TOL)


# ------------------------------------------------------------------ trajectories
@pytest.mark.kernels
def test_trajectory_projection_is_exact_for_a_planar_trajectory(mlp_arch, moons_task):
    g = torch.Generator().manual_seed(0)
    final = torch.randn(mlp_arch.n_params, generator=g) * 0.5
    e = torch.linalg.qr(torch.randn(mlp_arch.n_params, 2, generator=g, dtype=torch.float64))[0].T
    true = np.array([[3.0, 2.0], [2.0, 1.5], [1.0, 0.5], [0.5, -0.2], [0.0, 0.0]])
    ckpts = (final.double() + torch.as_tensor(true) @ e).float()
    origin, d, coords, explained = S.trajectory_pca(ckpts)
    assert torch.equal(origin, ckpts[-1])
    assert torch.allclose(origin + torch.as_tensor(coords, dtype=torch.float32) @ d, ckpts, atol=1e-5)
    assert explained.sum() == pytest.approx(1.0, abs=1e-6)
    # the coordinates are the true ones up to a rotation/reflection: pairwise distances agree
    dist = lambda c: np.linalg.norm(c[:, None] - c[None], axis=-1)  # noqa: E731
    assert np.allclose(dist(coords), dist(true), atol=1e-4)
    s = S.trajectory(mlp_arch, moons_task, ckpts, resolution=5)
    assert np.array_equal(s.path, coords) and s.points["final"] == (0.0, 0.0)
    at_path = wv.evaluate(mlp_arch, moons_task, s.weights_at(s.path))
    own = wv.evaluate(mlp_arch, moons_task, ckpts)
    assert torch.allclose(at_path["loss"], own["loss"], rtol=1e-4)
    with pytest.raises(ValueError, match="at least 3"):
        S.trajectory_pca(ckpts[:2])


def test_trajectory_rows_follow_one_model_by_epoch():
    meta = pd.DataFrame({"model_id": [1, 0, 1, 0, 1], "epoch": [5, 0, 0, 5, 2]})
    assert list(S.trajectory_rows(meta, 1)) == [2, 4, 0]
    with pytest.raises(ValueError, match="no checkpoint"):
        S.trajectory_rows(meta, 9)


def test_trajectory_on_a_sample_model(moons_zoo):
    rows = S.trajectory_rows(moons_zoo.metadata, moons_zoo.metadata.model_id.iloc[0])
    s = S.trajectory(moons_zoo.arch, moons_zoo.task, moons_zoo.weights[rows], resolution=5)
    assert s.path.shape == (len(rows), 2) and s.loss.shape == (5, 5)


# ------------------------------------------------------------------ Bezier
def test_bezier_untrained_is_the_line_and_training_lowers_the_curve(trained):
    zoo, a, _ = trained
    # a permuted copy: the straight path between them has a high barrier; a curve can go around it
    b = wv.apply_symmetry(zoo.arch, a, wv.random_symmetry(zoo.arch, seed=1))
    assert torch.equal(C.bezier_points(a, (a + b) / 2, b, torch.tensor([0.0, 1.0])), torch.stack([a, b]))
    still = C.bezier_curve(zoo.arch, zoo.task, a, b, steps=9, n_iter=0)
    assert np.allclose(still.curve.loss, still.line.loss, rtol=1e-4)
    fit = C.bezier_curve(zoo.arch, zoo.task, a, b, steps=9, n_iter=100, seed=0, split="train")
    own = wv.evaluate(zoo.arch, zoo.task, torch.stack([a, b]), split="train")
    assert fit.curve.loss.iloc[0] == pytest.approx(float(own["loss"][0]), rel=TOL)
    assert fit.curve.loss.iloc[-1] == pytest.approx(float(own["loss"][1]), rel=TOL)
    assert wv.loss_barrier(fit.curve) < 0.5 * wv.loss_barrier(fit.line)
    assert fit.history.shape == (100,) and fit.control.shape == a.shape


# ------------------------------------------------------------------ anchor
def test_weight_matching_halves_the_mean_barrier_on_moons(moons_zoo):
    """Git Re-Basin / Entezari et al. at small scale: >= 10 pairs of independently trained final models."""
    fin = moons_zoo.final_index()
    acc = moons_zoo.metadata["test_acc"].to_numpy()[fin]
    good = fin[acc >= np.median(acc)]
    pairs = L.independent_pairs(moons_zoo.metadata, good, 10, seed=0)
    assert len(pairs) == 10
    meta = moons_zoo.metadata
    for i, j in pairs:
        assert meta.model_id[i] != meta.model_id[j] and meta.seed[i] != meta.seed[j]
    assert len({r for p in pairs for r in p}) == 20
    i, j = (torch.as_tensor(x) for x in zip(*pairs, strict=True))
    naive = L.pair_barriers(moons_zoo.arch, moons_zoo.task, moons_zoo.weights[i], moons_zoo.weights[j])
    aligned = L.pair_barriers(moons_zoo.arch, moons_zoo.task, moons_zoo.weights[i], moons_zoo.weights[j], "weight")
    assert aligned.loss_barrier.mean() <= 0.5 * naive.loss_barrier.mean()


# ------------------------------------------------------------------ figures
def test_figures_have_labelled_axes_and_data(trained):
    zoo, a, b = trained
    c = zoo.weights[zoo.final_index()[0]]
    curves = L.paths(zoo.arch, zoo.task, a, b, methods=("naive", "weight"), steps=5)
    fig = P.path_figure(curves)
    assert isinstance(fig, go.Figure) and len(fig.data) == 4
    assert fig.layout.xaxis2.title.text and fig.layout.yaxis.title.text == "loss"
    m = {"naive": np.array([[0, 0.3], [0.3, 0]]), "weight": np.array([[0, 0.1], [0.1, 0]])}
    fig = P.barrier_heatmaps(m, ["#1", "#2"])
    assert len(fig.data) == 2 and fig.layout.coloraxis.cmax == pytest.approx(0.3)
    planes = {k: S.plane(zoo.arch, zoo.task, a, b, c, resolution=5, method=k) for k in ("naive", "weight")}
    fig = P.surfaces_side_by_side(planes)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    maps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(maps) == 2 and sum(isinstance(t, go.Contour) for t in fig.data) == 2  # colours and level lines
    assert maps[0].zmin == maps[1].zmin and maps[0].zmax == maps[1].zmax
    assert maps[0].zmin == pytest.approx(min(np.log10(p.loss).min() for p in planes.values()))
    assert [m.showscale for m in maps] == [False, True]  # one colour bar for the shared scale
    stars = [t for t in fig.data if isinstance(t, go.Scatter)]
    assert list(stars[0].text) == ["A", "B", "C"]  # named as on every page
    s = S.random_plane(zoo.arch, zoo.task, a, resolution=5)
    assert P.surface_contour(s).layout.xaxis.title.text
    fig3 = P.surface_3d(s)
    assert isinstance(fig3.data[0], go.Surface) and fig3.layout.scene.zaxis.title.text
    assert len(P.line_figure(S.random_line(zoo.arch, zoo.task, a, steps=5)).data) == 2
    fit = C.bezier_curve(zoo.arch, zoo.task, a, b, steps=5, n_iter=0)
    assert len(P.bezier_figure(fit).data) == 4


# ------------------------------------------------------------------ library helpers behind the page, sharpness figure
def test_paths_by_split_and_bezier_between_equal_their_parts(trained):
    zoo, a, b = trained
    both = L.paths_by_split(zoo.arch, zoo.task, a, b, ("naive",), 7, (0.0, 1.0), ("test", "train"))
    for split in ("test", "train"):
        alone = L.paths(zoo.arch, zoo.task, a, b, ("naive",), 7, split=split)
        got = both[both["split"] == split].drop(columns="split").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone)
    fit = C.bezier_between(zoo.arch, zoo.task, a, b, align=False, n_iter=10, seed=3)
    ref = C.bezier_curve(zoo.arch, zoo.task, a, b, n_iter=10, seed=3)
    pd.testing.assert_frame_equal(fit.curve, ref.curve)
    torch.testing.assert_close(fit.control, ref.control, rtol=0, atol=0)


def test_trajectory_rows_at_most_keeps_first_and_last(moons_zoo):
    model = moons_zoo.metadata["model_id"].iloc[0]
    full = S.trajectory_rows(moons_zoo.metadata, model)
    few = S.trajectory_rows(moons_zoo.metadata, model, at_most=3)
    assert len(few) == min(3, len(full)) and few[0] == full[0] and few[-1] == full[-1]
    assert set(few) <= set(full) and np.all(np.diff(moons_zoo.metadata["epoch"].to_numpy()[few]) > 0)


def test_short_labels_and_sharpness_figure():
    meta = pd.DataFrame({"model_id": [3, 3, 4], "epoch": [0, 20, 20], "test_acc": [0.5, 0.93, 0.9]})
    assert P.short_labels(meta) == ["#0 · m3 · e0 · 0.500", "#1 · m3 · e20 · 0.930", "#2 · m4 · e20 · 0.900"]
    assert P.short_labels(meta[["epoch"]]) == ["#0 · e0", "#1 · e20", "#2 · e20"]
    table = meta.assign(label=P.short_labels(meta), top_eigenvalue=[1.0, 5.0, 4.0], trace=[3.0, 9.0, 7.0],
                        trace_se=[0.5, 1.0, 0.25])
    fig = P.sharpness_figure(table, "epoch", by="model_id")
    assert len(fig.data) == 4  # two models x (eigenvalue, trace)
    eig = [t for t in fig.data if t.xaxis == "x"]
    assert [list(t.y) for t in eig] == [[1.0, 5.0], [4.0]]
    trace = [t for t in fig.data if t.xaxis == "x2"]
    assert list(trace[0].error_y.array) == [1.0, 2.0]  # +-2 standard errors
    assert all(t.mode == "lines+markers" for t in fig.data)
    assert all(t.mode == "markers" for t in P.sharpness_figure(table, "test_acc").data)


def test_a_plane_through_batchnorm_networks_marks_the_points_that_are_not_networks(digits_task):
    """Far from the models a plane reaches negative BatchNorm running variances: those grid points are not
    networks. They are NaN with the reason recorded, every other point is evaluated as usual, and the contour
    builders draw them grey and say so (they used to fail on the NaN colour range)."""
    from test_symmetry import random_weights

    bn_cnn = Architecture({"input_shape": [1, 8, 8], "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
        {"type": "batchnorm", "num_features": 4}, {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "in_features": 144, "out_features": 10}]})
    a = random_weights(bn_cnn, 1, seed=2)[0]
    direction = torch.zeros(2, bn_cnn.n_params)
    var = torch.cat([torch.arange(p.offset, p.offset + p.numel) for p in bn_cnn.layout if p.role == "running_var"])
    direction[0, var] = -a[var] / 0.6  # the variances reach 0 at x = 0.6 and turn negative beyond
    direction[1] = torch.randn(bn_cnn.n_params, generator=torch.Generator().manual_seed(0)) * 0.01
    x, y = np.linspace(0.0, 1.0, 5), np.linspace(-1.0, 1.0, 3)
    s = S.surface(bn_cnn, digits_task, a, direction, x, y)
    undefined = ~np.isfinite(s.loss)
    assert undefined[:, x > 0.6].all() and np.isfinite(s.loss[:, x < 0.6]).all()
    assert s.info["undefined"] == int(undefined.sum()) == 6 and "negative" in s.info["undefined_reason"]
    inside = S.surface(bn_cnn, digits_task, a, direction, x[x < 0.6], y)
    np.testing.assert_allclose(inside.loss, s.loss[:, x < 0.6], rtol=1e-5)
    for fig in (P.surface_contour(s, title="plane"), P.surfaces_side_by_side({"naive": s, "weight": s})):
        assert "6 of 15 grid points grey" in fig.layout.title.text
        zmins = [t.zmin for t in fig.data if isinstance(t, go.Heatmap) and t.zmin is not None]
        assert all(np.isfinite(zmins))
