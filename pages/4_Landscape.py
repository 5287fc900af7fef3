"""Landscape: loss along paths between models (naive and aligned), barrier matrices, the plane through
three models, random filter-normalised planes around one model, training trajectories, Bezier curves."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from wslviz import ui
from wslviz.plots import landscape as P
from wslviz.understand import curves as C
from wslviz.understand import landscape as L
from wslviz.understand import surfaces as S

st.title("Loss landscape and mode connectivity")
ui.teaching(
    "loss landscapes and mode connectivity",
    "Every network is a point in weight space; its **loss landscape** is the loss as a function of that "
    "point. We can only look at it along lines and planes.\n\n"
    "* **Paths.** Walk the straight line `(1 - t) A + t B` between two trained models. Between "
    "independently trained networks the loss usually rises in the middle: a **loss barrier** (the largest "
    "rise above the straight chord between the two end losses). Much of it is an artefact of "
    "**permutation symmetry**: hidden units can be reordered without changing the function, and two "
    "training runs end with their units in different orders. Re-expressing B in A's basis (weight or "
    "activation matching) before interpolating makes the barrier shrink or vanish: the two solutions "
    "sit in one *linearly connected* basin modulo permutations (Entezari et al., ICLR 2022; Ainsworth "
    "et al., *Git Re-Basin*, ICLR 2023).\n"
    "* **Barrier matrix.** The same for every pair of a set of models, before and after alignment.\n"
    "* **Plane through three models** (Garipov et al., NeurIPS 2018): the models at the stars; low-loss "
    "regions between them show whether they share a basin. Compare the naive plane with the plane after "
    "aligning B and C to A.\n"
    "* **Random directions** (Li et al., NeurIPS 2018): the loss around one model along two random "
    "Gaussian directions, each filter rescaled to the norm of the model's own filter (so sharpness is "
    "comparable between models despite scale symmetries).\n"
    "* **Trajectory**: a model's checkpoints projected on the two main directions of its own training "
    "path, drawn over the loss on that plane (Li et al., Sec. 7).\n"
    "* **Curved path** (Garipov et al. 2018; Draxler et al. 2018): even without alignment, a quadratic "
    "Bezier curve with a trained middle point usually finds a low-loss path between two models where "
    "the straight line crosses a barrier.\n\n"
    "**What to look for:** the red naive barrier against the green aligned one; whether the stars lie in "
    "one valley; how flat the minimum is along random directions.",
    "Garipov et al., *Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs*, NeurIPS 2018; Li et "
    "al., *Visualizing the Loss Landscape of Neural Nets*, NeurIPS 2018; Frankle et al., *Linear Mode "
    "Connectivity and the Lottery Ticket Hypothesis*, ICML 2020; Entezari et al., *The Role of "
    "Permutation Invariance in Linear Mode Connectivity*, ICLR 2022; Ainsworth et al., *Git Re-Basin*, "
    "ICLR 2023.",
)

zoo = ui.require_zoo()
if zoo.task is None:
    st.warning("This zoo has no evaluation data (task), so losses cannot be computed: attach a task (a .npz "
               "with x and y) on the home page to draw landscapes.")
    st.stop()
if zoo.n_checkpoints < 2:
    st.warning("Landscapes between models need at least two checkpoints; this zoo has one.")
    st.stop()

path = ui.current_zoo_path()
fingerprint = zoo.fingerprint
RESULTS_KEY = "landscape_results"
SPLITS = {"test": "test split", "train": "training split"}


# ------------------------------------------------------------------ cached computations
# Results are cached per (section, zoo path, zoo fingerprint, parameters) in a slot that is filled
# outside the cached function, so the progress bar drawn while computing is never replayed from the
# cache (Streamlit cannot replay elements created outside a cached function).
@st.cache_resource(show_spinner=False, max_entries=64)
def slot(section: str, zoo_path: str, fp: str, params: str) -> dict:
    return {}


def paths_of(z, a, b, methods, steps, t_range, split, progress):
    return L.paths(z.arch, z.task, z.weights[a], z.weights[b], methods, steps, t_range, split, progress=progress)


def matrix_of(z, rows, method, steps, split, progress):
    return L.barrier_matrix(z.arch, z.task, z.weights[list(rows)], method, steps, split, progress=progress)


def plane_of(z, a, b, c, resolution, margin, method, split, progress):
    return S.plane(z.arch, z.task, z.weights[a], z.weights[b], z.weights[c], resolution, margin, method, split,
                   progress=progress)


def random_of(z, row, resolution, span, seed, split, progress):
    w = z.weights[row]
    line = S.random_line(z.arch, z.task, w, 2 * resolution + 1, span, seed, split)
    return line, S.random_plane(z.arch, z.task, w, resolution, span, seed, split, progress=progress)


def trajectory_of(z, model_id, resolution, margin, split, progress):
    rows = S.trajectory_rows(z.metadata, model_id)
    return rows, S.trajectory(z.arch, z.task, z.weights[rows], resolution, margin, split, progress=progress)


def bezier_of(z, a, b, align, n_iter, seed, split, progress):
    wa, wb = z.weights[a], z.weights[b]
    if align:
        wb = L.align_pair(z.arch, z.task, wa, wb, "weight")
    return C.bezier_curve(z.arch, z.task, wa, wb, steps=25, n_iter=n_iter, seed=seed, split=split, progress=progress)


def cached(section: str, fn: Callable, label: str, args: tuple) -> Any:
    """``fn(zoo, *args, progress)`` from the cache, or computed now with a progress bar."""
    store = slot(section, path, fingerprint, repr(args))
    if "value" not in store:
        holder = st.empty()
        try:
            with holder:
                store["value"] = fn(zoo, *args, ui.progress_callback(label))
        finally:
            holder.empty()
    return store["value"]


def compute(section: str, fn: Callable, label: str, *args: Any) -> None:
    """Compute a section's result (on a button) and remember its arguments for later reruns."""
    results = st.session_state.setdefault(RESULTS_KEY, {})
    try:
        cached(section, fn, label, args)
    except ValueError as e:  # collinear models, too short a trajectory, ...: say what is wrong
        results.pop(section, None)
        st.error(str(e))
        return
    results[section] = (path, fingerprint, fn, label, args)


def result(section: str) -> Any:
    """The last result of a section for the current zoo (from the cache), or None."""
    stored = st.session_state.get(RESULTS_KEY, {}).get(section)
    if stored is None or stored[:2] != (path, fingerprint):
        return None
    return cached(section, *stored[2:])


# Charts use ``theme=None``: the figures carry the house style (wslviz.plots.style), and Streamlit's theme
# would replace their loss colour scale.
# ------------------------------------------------------------------ models
meta = zoo.metadata
final = [int(r) for r in zoo.final_index()]
selection = [r for r in ui.get_selection() if 0 <= r < zoo.n_checkpoints]
defaults = list(dict.fromkeys(selection + final + list(range(zoo.n_checkpoints))))[:3]
defaults += [defaults[-1]] * (3 - len(defaults))
options = list(range(zoo.n_checkpoints))


def label(r: int) -> str:
    return ui.checkpoint_label(zoo, r)


st.caption(f"**{zoo.name}**: {zoo.arch.describe()}, task {zoo.task.name}. Models A, B and C default to the "
           "linked selection (pick models on the Zoo or Projections page), else to final checkpoints.")
c1, c2, c3, c4 = st.columns([3, 3, 3, 2])
row_a = c1.selectbox("Model A", options, index=defaults[0], format_func=label, key="land_a")
row_b = c2.selectbox("Model B", options, index=defaults[1], format_func=label, key="land_b")
row_c = c3.selectbox("Model C (plane only)", options, index=defaults[2], format_func=label, key="land_c")
split = c4.radio("Evaluate on", list(SPLITS), format_func=SPLITS.get, key="land_split", horizontal=True)

tabs = st.tabs(["Path A → B", "Barrier matrix", "Plane through A, B, C", "Random directions around A",
                "Training trajectory", "Curved path A → B"])

# ------------------------------------------------------------------ path
with tabs[0]:
    st.markdown("Loss and accuracy along the straight line from A (t = 0) to B (t = 1), with B as trained "
                "(naive) and after re-expressing B in A's basis. Outside [0, 1] the line extrapolates.")
    p1, p2, p3 = st.columns(3)
    steps = p1.slider("Points on the path", 5, 101, 25, key="land_path_steps")
    t_range = p2.slider("Range of t", -1.0, 2.0, (0.0, 1.0), 0.05, key="land_path_range")
    methods = p3.multiselect("Paths", list(L.METHODS), default=list(L.METHODS), format_func=P.METHOD_LABELS.get,
                             key="land_path_methods")
    if st.button("Compute paths", type="primary", key="land_path_go"):
        if row_a == row_b:
            st.warning("A and B are the same checkpoint: the path is a single point (its barrier is 0).")
        if not methods:
            st.warning("Pick at least one path.")
        else:
            compute("path", paths_of, "Evaluating the paths", row_a, row_b, tuple(methods), steps,
                    (min(t_range[0], 0.0), max(t_range[1], 1.0)), split)
    curves = result("path")
    if curves is not None:
        st.plotly_chart(P.path_figure(curves), key="land_path_fig", theme=None)
        bars = L.barriers(curves)
        bars["method"] = bars["method"].map(lambda m: P.METHOD_LABELS.get(m, m))
        st.dataframe(bars.rename(columns={"loss_barrier": "loss barrier", "accuracy_barrier": "accuracy barrier"}),
                     hide_index=True)
        ui.download_csv(curves, "landscape-paths")

# ------------------------------------------------------------------ barrier matrix
with tabs[1]:
    st.markdown("Loss barrier of every pair of the chosen checkpoints, naive (left) and after weight "
                "matching (right), on one colour scale: alignment turns most of the matrix dark.")
    default_rows = selection if len(selection) >= 2 else final[:6]
    rows = st.multiselect("Checkpoints (2 to 16)", options, default=default_rows, format_func=label,
                          max_selections=16, key="land_matrix_rows")
    m1, m2 = st.columns(2)
    mat_steps = m1.slider("Points per path", 5, 25, 11, key="land_matrix_steps")
    with_act = m2.checkbox("Also activation matching", False, key="land_matrix_act")
    if st.button("Compute barrier matrix", type="primary", key="land_matrix_go"):
        if len(rows) < 2:
            st.warning("Pick at least two checkpoints.")
        else:
            stored = st.session_state.setdefault(RESULTS_KEY, {})
            for method in L.METHODS:
                stored.pop(f"matrix-{method}", None)
            for method in ("naive", "weight") + (("activation",) if with_act else ()):
                compute(f"matrix-{method}", matrix_of, f"Barriers ({method})", tuple(rows), method, mat_steps,
                        split)
    matrices = {m: result(f"matrix-{m}") for m in L.METHODS}
    matrices = {m: v for m, v in matrices.items() if v is not None}
    if matrices:
        stored_rows = st.session_state[RESULTS_KEY][f"matrix-{next(iter(matrices))}"][4][0]
        labels = [f"#{r}" for r in stored_rows]
        metric = st.radio("Barrier of", ["loss", "accuracy"], horizontal=True, key="land_matrix_metric")
        st.plotly_chart(P.barrier_heatmaps({m: v[metric] for m, v in matrices.items()}, labels, metric),
                        key="land_matrix_fig", theme=None)
        iu = np.triu_indices(len(labels), 1)
        st.caption(" · ".join(f"mean {P.METHOD_LABELS.get(m, m)}: {v[metric][iu].mean():.4f}"
                              for m, v in matrices.items()))

# ------------------------------------------------------------------ plane
with tabs[2]:
    st.markdown("The plane through A, B and C: the x axis runs from A to B, the y axis towards C "
                "(Gram-Schmidt), in weight-space distance. Left as trained, right with B and C weight-matched "
                "to A; the stars mark the three models.")
    q1, q2, q3 = st.columns(3)
    resolution = q1.slider("Grid resolution", 5, 51, 21, 2, key="land_plane_res")
    margin = q2.slider("Margin around the models", 0.0, 1.0, 0.25, 0.05, key="land_plane_margin")
    log_plane = q3.checkbox("Colour by log10 loss", True, key="land_plane_log")
    if st.button("Compute planes", type="primary", key="land_plane_go"):
        for method in ("naive", "weight"):
            compute(f"plane-{method}", plane_of, f"Evaluating the {method} plane", row_a, row_b, row_c,
                    resolution, margin, method, split)
    planes = {m: result(f"plane-{m}") for m in ("naive", "weight")}
    planes = {m: v for m, v in planes.items() if v is not None}
    if planes:
        st.plotly_chart(P.surfaces_side_by_side(planes, log=log_plane), key="land_plane_fig", theme=None)

# ------------------------------------------------------------------ random directions
with tabs[3]:
    st.markdown("The loss around model A along random Gaussian directions, filter-normalised (Li et al. "
                "2018): each filter of a direction has the norm of A's filter; biases and normalisation "
                "parameters stay fixed. The same seed always gives the same directions.")
    r1, r2, r3 = st.columns(3)
    rand_res = r1.slider("Grid resolution", 5, 51, 21, 2, key="land_rand_res")
    span = r2.slider("Half-width (1 = every filter moved by its own norm)", 0.1, 3.0, 1.0, 0.1,
                     key="land_rand_span")
    seed = int(r3.number_input("Seed", 0, 100_000, 0, key="land_rand_seed"))
    if st.button("Compute random directions", type="primary", key="land_rand_go"):
        compute("random", random_of, "Evaluating the random plane", row_a, rand_res, span, seed, split)
    found = result("random")
    if found is not None:
        line, surf = found
        st.plotly_chart(P.line_figure(line, "One random direction"), key="land_rand_line", theme=None)
        left, right = st.columns(2)
        left.plotly_chart(P.surface_contour(surf, title="Two random directions: contours"), key="land_rand_contour",
                          theme=None)
        right.plotly_chart(P.surface_3d(surf, title="Two random directions: surface"), key="land_rand_3d", theme=None)

# ------------------------------------------------------------------ trajectory
with tabs[4]:
    st.markdown("One model's checkpoints (ordered by epoch) on the plane of the two main directions of its own "
                "training path (PCA of the offsets from its final checkpoint), over the loss on that plane.")
    if "model_id" not in meta or "epoch" not in meta:
        st.info("Trajectories need `model_id` and `epoch` columns in the zoo's metadata; this zoo has none.")
    else:
        ids = list(dict.fromkeys(meta["model_id"].tolist()))
        default_id = meta["model_id"].iloc[row_a]
        s1, s2 = st.columns(2)
        model_id = s1.selectbox("Model (default: model A's)", ids, index=ids.index(default_id),
                                key="land_traj_model")
        traj_res = s2.slider("Grid resolution", 5, 51, 21, 2, key="land_traj_res")
        n_ckpt = int((meta["model_id"] == model_id).sum())
        st.caption(f"{n_ckpt} checkpoints of this model.")
        if st.button("Compute trajectory", type="primary", key="land_traj_go"):
            compute("trajectory", trajectory_of, "Evaluating the trajectory plane", model_id, traj_res, 0.25,
                    split)
        found = result("trajectory")
        if found is not None:
            traj_rows, surf = found
            st.plotly_chart(P.surface_contour(surf, title=f"Training trajectory of model {model_id}"),
                            key="land_traj_fig", theme=None)
            epochs = meta["epoch"].to_numpy()[traj_rows]
            st.caption("Epochs along the path: " + ", ".join(str(e) for e in epochs) +
                       f". The plane captures {100 * sum(surf.info['explained']):.1f}% of the path's squared length.")

# ------------------------------------------------------------------ Bezier
with tabs[5]:
    st.markdown("A quadratic Bezier curve from A to B whose middle (control) point is trained for low "
                "training loss along the curve (Garipov et al. 2018), beside the straight line. Training "
                "starts from the straight line and takes a few seconds.")
    b1, b2, b3 = st.columns(3)
    n_iter = b1.slider("Training steps", 20, 1000, 200, 20, key="land_bez_iter")
    align_bez = b2.checkbox("Weight-match B to A first", False, key="land_bez_align")
    bez_seed = int(b3.number_input("Seed", 0, 100_000, 0, key="land_bez_seed"))
    if st.button("Train curve", type="primary", key="land_bez_go"):
        if row_a == row_b:
            st.warning("A and B are the same checkpoint: pick two different models.")
        else:
            compute("bezier", bezier_of, "Training the Bezier curve", row_a, row_b, align_bez, n_iter, bez_seed,
                    split)
    fit = result("bezier")
    if fit is not None:
        st.plotly_chart(P.bezier_figure(fit), key="land_bez_fig", theme=None)
        st.caption(f"Loss barrier: straight line {L.loss_barrier(fit.line):.4f}, "
                   f"Bezier curve {L.loss_barrier(fit.curve):.4f}.")
