"""Landscape: loss along paths between models (naive and aligned), barrier matrices, the plane through
three models, random filter-normalised planes around one model, training trajectories, Bezier curves, sharpness."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from wslviz import ui
from wslviz.core import inr
from wslviz.plots import inr as iplots
from wslviz.plots import landscape as P
from wslviz.scale import cost
from wslviz.ui import texts
from wslviz.understand import curves as C
from wslviz.understand import inr_paths
from wslviz.understand import landscape as L
from wslviz.understand import repair as R
from wslviz.understand import sharpness as H
from wslviz.understand import surfaces as S

st.title("Loss landscape and mode connectivity")
ui.teaching("landscape")

zoo = ui.require_zoo()
if inr.is_inr(zoo.arch) and zoo.n_checkpoints >= 2:  # INRs: the straight path drawn as images, naive and aligned
    st.subheader("Images along the path between two INRs")
    pair, names, c1, c2 = ui.default_rows(zoo, 2), ui.checkpoint_labels(zoo).__getitem__, *st.columns(2)
    a = c1.selectbox("INR A", range(zoo.n_checkpoints), index=pair[0], format_func=names, key="land_inr_a")
    b = c2.selectbox("INR B", range(zoo.n_checkpoints), index=pair[-1], format_func=names, key="land_inr_b")
    ts, strips = ui.result(zoo, ("inr path", a, b), lambda progress=None: inr_paths.path_images(zoo, a, b))
    ui.chart(iplots.path_strips(strips, ts, title="(1 - t) A + t B, before and after weight matching"),
             key="land_inr_path")
if zoo.task is None:
    st.warning("This zoo has no evaluation data (task), so losses cannot be computed: attach a task (a .npz "
               "with x and y) on the home page to draw landscapes.")
    st.stop()
if zoo.n_checkpoints < 2:
    st.warning("Landscapes between models need at least two checkpoints; this zoo has one.")
    st.stop()

SPLITS = {"test": "test split", "train": "training split"}
MAX_MATRIX = 16  # checkpoints in the barrier matrix: 120 paths
MAX_SHARP = 24  # checkpoints in the sharpness figure: all iterate together, one double backward per step
arch, task, W, meta = zoo.arch, zoo.task, zoo.weights, zoo.metadata
options = list(range(zoo.n_checkpoints))
defaults = ui.default_rows(zoo, 3)
defaults += [defaults[-1]] * (3 - len(defaults))


label = P.short_labels(meta).__getitem__  # the long labels were cut off in the narrow pickers


def grid_controls(section: str, second: tuple) -> tuple[int, float, object]:
    """A surface tab's controls: the grid resolution (keyed ``land_{section}_res``), its second slider
    (``(label, lo, hi, default, step, key)``) and the third column for one more widget."""
    c1, c2, c3 = st.columns(3)
    res = c1.slider("Grid resolution", 5, 51, 21, 2, key=f"land_{section}_res")
    return res, c2.slider(*second[:5], key=second[5]), c3


def request(section: str, key: tuple, compute, label: str, run: bool):
    """This page's on-demand results (:func:`wslviz.ui.on_request`), keyed by section and parameters."""
    return ui.on_request(zoo, f"landscape-{section}", (section, *key), compute, label, run)


st.caption(f"**{zoo.name}**: {arch.describe()}, task {task.name}. Models A, B and C default to distinct models of "
           "the linked selection (their latest checkpoints, best first; pick models on the Zoo or Projections "
           "page), else to the best final checkpoints.")
c1, c2, c3 = st.columns(3)
row_a = c1.selectbox("Model A", options, index=defaults[0], format_func=label, key="land_a")
row_b = c2.selectbox("Model B", options, index=defaults[1], format_func=label, key="land_b")
row_c = c3.selectbox("Model C (plane only)", options, index=defaults[2], format_func=label, key="land_c")
split = st.radio("Evaluate on", list(SPLITS), format_func=SPLITS.get, key="land_split", horizontal=True)

tabs = st.tabs(["Path A → B", "Barrier matrix", "Plane through A, B, C", "Random directions around A",
                "Training trajectory", "Curved path A → B", "Sharpness"])

with tabs[0]:
    st.markdown("Loss and accuracy along the straight line from A (t = 0) to B (t = 1), with B as trained "
                "(naive) and after re-expressing B in A's basis. Outside [0, 1] the line extrapolates.")
    p1, p2, p3, p4 = st.columns([2, 2, 3, 2])
    steps = p1.slider("Points on the path", 5, 101, L.BARRIER_STEPS, key="land_path_steps")
    t_range = p2.slider("Range of t", -1.0, 2.0, (0.0, 1.0), 0.05, key="land_path_range")
    # activation matching needs the units' activations (LoRA rank units have none of their own)
    path_methods = [m for m in L.METHODS if m != "activation" or arch.matches_activations]
    methods = p3.multiselect("Paths", path_methods, default=path_methods, format_func=str,  # short chips
                             key="land_path_methods",
                             help=" · ".join(f"**{m}**: {P.METHOD_LABELS.get(m, m)}" for m in path_methods))
    both = p4.toggle("train + test", value=False, key="land_path_both",
                     help="Train and test together: both splits on one plot (the training split dashed), "
                          "whatever 'Evaluate on' says.")
    log_loss = p4.toggle("log loss axis", value=False, key="land_path_log")
    correction = st.radio("Correction of the points between A and B", R.METHODS,
                          index=R.METHODS.index(R.default_method(arch)), format_func=R.LABELS.get, horizontal=True,
                          key="land_path_correction",
                          help="BatchNorm reset recomputes each point's BatchNorm statistics from training data; "
                               "REPAIR also rescales every channel to the interpolated statistics of A and B "
                               "(Jordan et al. 2023). The default is the Symmetry page's too.")
    ok = ui.cost_gate(zoo, "land_path", cost.path_work(arch, task, steps * len(methods),
                                                       ("test", "train") if both else (split,), correction),
                      sum(m != "naive" for m in methods))
    run = st.button("Compute paths", type="primary", key="land_path_go", disabled=not ok)
    if run and row_a == row_b:
        st.warning("A and B are the same checkpoint: the path is a single point (its barrier is 0).")
    if run and not methods:
        st.warning("Pick at least one path.")
    t_span = (min(t_range[0], 0.0), max(t_range[1], 1.0))
    params = (row_a, row_b, tuple(methods), steps, t_span, ("test", "train") if both else (split,))
    curves = request("path", (*params, correction),
                     partial(L.paths_by_split, arch, task, W[row_a], W[row_b], *params[2:], repair=correction),
                     "Evaluating the paths", run and bool(methods))
    if curves is not None:
        ui.chart(P.path_figure(curves if curves["split"].nunique() > 1 else curves.drop(columns="split"),
                               log=log_loss), key="land_path_fig")
        bars = L.barrier_table(curves)
        by = bars[bars["split"] == bars["split"].iloc[0]].set_index("method")["loss_barrier"]
        # 4 decimals: a barrier of 1e-16 is float rounding, shown as 0
        st.dataframe(bars.round({"loss_barrier": 4, "accuracy_barrier": 4}).assign(
            method=bars["method"].map(P.METHOD_LABELS.get)).rename(
            columns={"loss_barrier": "loss barrier", "accuracy_barrier": "accuracy barrier"}), hide_index=True)
        used = ui.requested_key(zoo, "landscape-path")[-1]
        st.caption(f"Barriers with {R.LABELS[used]} of the points between the models.")
        if by.get("activation", 0.0) > by.get("naive", np.inf):
            st.info(texts.NOTES["activation worse than naive"])
        ui.download_csv(curves, "landscape-paths")

with tabs[1]:
    st.markdown("Loss barrier of every pair of the chosen checkpoints, naive (left) and after weight matching "
                "(right), on one colour scale: dark cells are high barriers, pale cells low ones, so alignment "
                "turns most of the matrix pale. Each cell shows its value.")
    rows = st.multiselect(f"Checkpoints (2 to {MAX_MATRIX})", options, format_func=label,
                          default=ui.default_rows(zoo, 8 if ui.get_selection() else 6),
                          max_selections=MAX_MATRIX, key="land_matrix_rows")
    m1, m2, m3 = st.columns(3)
    mat_steps = m1.slider("Points per path", 5, 51, L.BARRIER_STEPS, key="land_matrix_steps")
    with_act = m2.checkbox("Also activation matching", False, key="land_matrix_act",
                           disabled=not arch.matches_activations)
    mat_correction = m3.radio("Correction", R.METHODS, index=R.METHODS.index(R.default_method(arch)),
                              format_func=R.LABELS.get, horizontal=True, key="land_matrix_correction")
    n_pairs = len(rows) * (len(rows) - 1) // 2
    ok = ui.cost_gate(zoo, "land_matrix", cost.path_work(arch, task, n_pairs * mat_steps * (3 if with_act else 2),
                                                         (split,), mat_correction), n_pairs * (2 if with_act else 1))
    run = st.button("Compute barrier matrix", type="primary", key="land_matrix_go", disabled=not ok)
    if run and len(rows) < 2:
        st.warning("Pick at least two checkpoints.")
        run = False
    mat_methods = ("naive", "weight") + (("activation",) if with_act else ())
    matrices = request("matrix", (tuple(rows), mat_methods, mat_steps, split, mat_correction),
                       partial(L.barrier_matrices, arch, task, W[list(rows)], mat_methods, mat_steps, split,
                               repair=mat_correction),
                       "Barrier matrices", run)
    if matrices:
        shown = ui.requested_key(zoo, "landscape-matrix")[1]
        metric = st.radio("Barrier of", ["loss", "accuracy"], horizontal=True, key="land_matrix_metric")
        ui.chart(P.barrier_heatmaps({m: v[metric] for m, v in matrices.items()}, [f"#{r}" for r in shown], metric),
                 key="land_matrix_fig")
        iu = np.triu_indices(len(shown), 1)
        st.caption(" · ".join(f"mean {P.METHOD_LABELS.get(m, m)}: {v[metric][iu].mean():.4f}"
                              for m, v in matrices.items())
                   + f" ({R.LABELS[ui.requested_key(zoo, 'landscape-matrix')[-1]]} of the points between).")

with tabs[2]:
    st.markdown("The plane through A, B and C: the x axis runs from A to B, the y axis towards C (Gram-Schmidt), "
                "in weight-space distance. Left as trained, right with B and C weight-matched to A, on one colour "
                "range; the stars mark the three models.")
    resolution, margin, q3 = grid_controls("plane", ("Margin around the models", 0.0, 1.0, 0.25, 0.05,
                                                     "land_plane_margin"))
    log_plane = q3.checkbox("Colour by log10 loss", True, key="land_plane_log")
    ok = ui.cost_gate(zoo, "land_plane", [(2 * resolution ** 2, split)], 2)
    run = st.button("Compute planes", type="primary", key="land_plane_go", disabled=not ok)
    planes = {m: request(f"plane-{m}", (row_a, row_b, row_c, resolution, margin, split),
                         partial(S.plane, arch, task, W[row_a], W[row_b], W[row_c], resolution, margin, m, split),
                         f"Evaluating the {m} plane", run) for m in ("naive", "weight")}
    planes = {m: v for m, v in planes.items() if v is not None}
    if planes:
        ui.chart(P.surfaces_side_by_side(planes, log=log_plane), key="land_plane_fig")

with tabs[3]:
    st.markdown("The loss around model A along random Gaussian directions, filter-normalised (Li et al. 2018): "
                "each filter of a direction has the norm of A's filter; biases and normalisation parameters stay "
                "fixed. The same seed always gives the same directions.")
    rand_res, span, r3 = grid_controls("rand", ("Half-width (1 = every filter moved by its own norm)", 0.1, 3.0,
                                                1.0, 0.1, "land_rand_span"))
    seed = int(r3.number_input("Seed", 0, 100_000, 0, key="land_rand_seed"))
    ok = ui.cost_gate(zoo, "land_rand", [(rand_res ** 2 + 2 * rand_res + 1, split)])
    run = st.button("Compute random directions", type="primary", key="land_rand_go", disabled=not ok)
    key = (row_a, rand_res, span, seed, split)
    line = request("random-line", key, partial(S.random_line, arch, task, W[row_a], 2 * rand_res + 1, span, seed,
                                               split), "Evaluating the random line", run)
    surf = request("random-plane", key, partial(S.random_plane, arch, task, W[row_a], rand_res, span, seed, split),
                   "Evaluating the random plane", run)
    if line is not None and surf is not None:
        ui.chart(P.line_figure(line, "One random direction"), key="land_rand_line")
        left, right = st.columns(2)
        with left:
            ui.chart(P.surface_contour(surf, title="Two random directions: contours"), key="land_rand_contour")
        with right:
            ui.chart(P.surface_3d(surf, title="Two random directions: surface"), key="land_rand_3d")

with tabs[4]:
    st.markdown("One model's checkpoints (ordered by epoch) on the plane of the two main directions of its own "
                "training path (PCA of the offsets from its final checkpoint), over the loss on that plane.")
    if "model_id" not in meta or "epoch" not in meta:
        st.info("Trajectories need `model_id` and `epoch` columns in the zoo's metadata; this zoo has none.")
    else:
        ids = list(dict.fromkeys(meta["model_id"].tolist()))
        s1, s2 = st.columns(2)
        model_id = s1.selectbox("Model (default: model A's)", ids, index=ids.index(meta["model_id"].iloc[row_a]),
                                key="land_traj_model")
        traj_res = s2.slider("Grid resolution", 5, 51, 21, 2, key="land_traj_res")
        traj_rows = S.trajectory_rows(meta, model_id)
        enough = len(traj_rows) >= 3
        if enough:
            st.caption(f"{len(traj_rows)} checkpoints of this model.")
        else:
            st.info(f"Model {model_id} has {len(traj_rows)} checkpoint(s): a trajectory plane needs at least 3. "
                    "Pick a model saved at more epochs.")
        ok = enough and ui.cost_gate(zoo, "land_traj", [(traj_res ** 2, split)])
        run = st.button("Compute trajectory", type="primary", key="land_traj_go", disabled=not ok)
        surf = request("trajectory", (model_id, traj_res, split),
                       partial(S.trajectory, arch, task, W[traj_rows], traj_res, 0.25, split),
                       "Evaluating the trajectory plane", run)
        if surf is not None:
            shown_id = ui.requested_key(zoo, "landscape-trajectory")[1]
            ui.chart(P.surface_contour(surf, title=f"Training trajectory of model {shown_id}"), key="land_traj_fig")
            epochs = meta["epoch"].to_numpy()[S.trajectory_rows(meta, shown_id)]
            st.caption("Epochs along the path: " + ", ".join(str(e) for e in epochs) +
                       f". The plane captures {100 * sum(surf.info['explained']):.1f}% of the path's squared length.")

with tabs[5]:
    st.markdown("A quadratic Bezier curve from A to B whose middle (control) point is trained for low training "
                "loss along the curve (Garipov et al. 2018), beside the straight line. Training starts from the "
                "straight line and takes a few seconds.")
    b1, b2, b3 = st.columns(3)
    n_iter = b1.slider("Training steps", 20, 1000, 200, 20, key="land_bez_iter")
    align_bez = b2.checkbox("Weight-match B to A first", False, key="land_bez_align")
    bez_seed = int(b3.number_input("Seed", 0, 100_000, 0, key="land_bez_seed"))
    # each step trains on 8 points of the curve and a batch of 128
    ok = ui.cost_gate(zoo, "land_bez", [(8 * cost.FORWARD_BACKWARD * n_iter, 128), (2 * L.BARRIER_STEPS, split)],
                      int(align_bez))
    run = st.button("Train curve", type="primary", key="land_bez_go", disabled=not ok)
    if run and row_a == row_b:
        st.warning("A and B are the same checkpoint: pick two different models.")
        run = False
    params = (row_a, row_b, align_bez, n_iter, bez_seed, split)
    fit = request("bezier", params, partial(C.bezier_between, arch, task, W[row_a], W[row_b], *params[2:]),
                  "Training the Bezier curve", run)
    if fit is not None:
        ui.chart(P.bezier_figure(fit), key="land_bez_fig")
        st.caption(f"Loss barrier: straight line {L.loss_barrier(fit.line):.4f}, "
                   f"Bezier curve {L.loss_barrier(fit.curve):.4f}.")

with tabs[6]:
    st.markdown("How sharp the loss is at each checkpoint: the top eigenvalue of the loss's Hessian by power "
                "iteration and its trace by Hutchinson's estimator (Rademacher probes), both from Hessian-vector "
                "products (double backward; Yao et al. 2020, PyHessian), on a fixed batch of the split chosen "
                "above. Flat minima (small values) are often said to generalise better (Keskar et al. 2017).")
    trajectory_ok = "model_id" in meta and "epoch" in meta
    own_run = trajectory_ok and st.toggle("model A's training run (every epoch)", value=False, key="land_sharp_run")
    if own_run:
        picked = S.trajectory_rows(meta, meta["model_id"].iloc[row_a], at_most=MAX_SHARP).tolist()
    else:
        picked = st.multiselect(f"Checkpoints (up to {MAX_SHARP})", options, default=ui.default_rows(zoo, 8),
                                format_func=label, max_selections=MAX_SHARP, key="land_sharp_rows")
    h1, h2, h3 = st.columns(3)
    n_examples = h1.select_slider("Examples in the batch", [64, 128, 256, 512, 1024], 256, key="land_sharp_n")
    n_probes = h2.select_slider("Hutchinson probes", [4, 8, 16, 32, 64], 16, key="land_sharp_probes")
    x_cols = [c for c in ("epoch", "test_acc", "train_acc") if c in meta] or ["row"]
    x_col = h3.radio("Plot against", x_cols, index=0 if own_run or "test_acc" not in x_cols else
                     x_cols.index("test_acc"), horizontal=True, key="land_sharp_x" + ("_run" if own_run else ""))
    # per checkpoint: up to 30 power iterations and the probes, each a Hessian-vector product
    ok = ui.cost_gate(zoo, "land_sharp", [(cost.HESSIAN_VECTOR * len(picked) * (30 + n_probes), n_examples)])
    run = st.button("Compute sharpness", type="primary", key="land_sharp_go", disabled=not ok)
    if run and not picked:
        st.warning("Pick at least one checkpoint.")
        run = False
    params = (tuple(picked), split, n_examples, n_probes)
    table = request("sharpness", params, partial(H.sharpness, arch, task, W[list(picked)], split, n_examples,
                                                 n_iter=30, tol=1e-3, n_probes=n_probes), "Hessian-vector products",
                    run)
    if table is not None:
        shown = list(ui.requested_key(zoo, "landscape-sharpness")[1])
        table = table.assign(row=shown, label=[label(r) for r in shown],
                             **{c: meta[c].to_numpy()[shown] for c in ("model_id", x_col) if c in meta})
        ui.chart(P.sharpness_figure(table, x_col, by="model_id" if own_run else None), key="land_sharp_fig")
        st.dataframe(table[["label", "loss", "top_eigenvalue", "iterations", "trace", "trace_se"]], hide_index=True,
                     column_config=ui.number_columns(table))
