"""Symmetry: apply a random permutation / rescaling / sign flip to one model and watch the weights move
while the function stays; align two models and see the matching; measure how much of a zoo's spread is
only symmetry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
import torch

from wslviz import ui
from wslviz.plots import symmetry as P
from wslviz.understand import align as A
from wslviz.understand import symmetry as S

st.title("Weight-space symmetries")
ui.teaching(
    "weight-space symmetries",
    "Two networks can have very different weights and compute exactly the same function. Reordering the "
    "hidden units of a layer (and the inputs of the next layer with them) changes nothing; nor does "
    "multiplying a ReLU unit's incoming weights by any `s > 0` and dividing its outgoing weights by `s`, "
    "or flipping the sign of a tanh unit on both sides. A layer of `n` units alone has `n!` orderings, so "
    "every trained network has astronomically many equivalent copies scattered through weight space.\n\n"
    "**What to look for:** on the first tab, the weight distance is large while the output difference "
    "is at float rounding; on the second, the matching undoes the arbitrary unit order of two independent "
    "training runs (the assignment marks follow the brightest cells); on the third, how much the "
    "pairwise distances in a zoo shrink once every model is expressed in one reference basis.",
    "Hecht-Nielsen, *On the algebraic structure of feedforward network weight spaces*, 1990; Ainsworth, "
    "Hayase & Srinivasa, *Git Re-Basin: Merging Models modulo Permutation Symmetries*, ICLR 2023; "
    "Entezari et al., *The Role of Permutation Invariance in Linear Mode Connectivity*, ICLR 2022.",
)

zoo = ui.require_zoo()
arch = zoo.arch
try:
    spec = arch.perm_spec
except S.SymmetryError as e:
    st.error(f"The symmetries of this architecture cannot be derived: {e}")
    st.stop()
if not spec.groups:
    st.warning(f"{arch.describe()} has no hidden layer, so it has no unit permutations to show.")
    st.stop()

path = ui.current_zoo_path()
fingerprint = zoo.fingerprint
options = list(range(zoo.n_checkpoints))
final = [int(r) for r in zoo.final_index()]
selection = [r for r in ui.get_selection() if 0 <= r < zoo.n_checkpoints]
defaults = list(dict.fromkeys(selection + final + options))
valid_kinds = [k for k in S.KINDS if any(k in g.kinds for g in spec.groups)]
KIND_LABELS = {"permutation": "permutation", "scale": "ReLU rescaling", "sign": "sign flip (odd activations)"}


def label(r: int) -> str:
    return ui.checkpoint_label(zoo, r)


def probe_x() -> torch.Tensor:
    """The inputs on which output differences are measured: the task's test inputs, else random probes."""
    return zoo.task.x_test if zoo.task is not None else S.probe_inputs(arch)


st.caption(f"**{zoo.name}**: {arch.describe()}; {len(spec.groups)} hidden layer(s) with "
           f"{', '.join(str(g.size) for g in spec.groups)} units; symmetries here: "
           f"{', '.join(KIND_LABELS[k] for k in valid_kinds)}.")
tabs = st.tabs(["One model: apply a symmetry", "Two models: align", "The zoo: spread before and after"])


# ------------------------------------------------------------------ one model
def bump_seed() -> None:
    st.session_state["sym_seed"] = int(st.session_state.get("sym_seed", 0)) + 1


with tabs[0]:
    c1, c2, c3 = st.columns([3, 3, 2])
    row = c1.selectbox("Checkpoint", options, index=defaults[0], format_func=label, key="sym_model")
    kinds = c2.multiselect("Symmetries to apply", valid_kinds, default=valid_kinds, format_func=KIND_LABELS.get,
                           key="sym_kinds")
    st.session_state.setdefault("sym_seed", 0)
    seed = c3.number_input("Seed", 0, 10_000, key="sym_seed")
    st.button("Apply another random symmetry", on_click=bump_seed, key="sym_apply", type="primary")
    if not kinds:
        st.info("Pick at least one kind of symmetry.")
    else:
        theta = zoo.weights[row].float()
        g = S.random_symmetry(arch, seed=int(seed), kinds=kinds)
        moved = S.apply_symmetry(arch, theta, g)
        x = probe_x()
        gap = S.equivalence_gap(arch, theta, moved, x)
        m1, m2, m3 = st.columns(3)
        m1.metric("Weight distance ‖θ − g·θ‖", f"{float((moved - theta).norm()):.3f}",
                  help=f"‖θ‖ = {float(theta.norm()):.3f}")
        m2.metric("Max output difference", f"{gap:.1e}", help="Largest |f(x; θ) − f(x; g·θ)| over "
                  + ("the test inputs" if zoo.task is not None else "256 random probe inputs"))
        m3.metric("Permutation symmetries", f"10^{S.group_size_log10(arch):.1f}",
                  help="Product over hidden layers of n! (scalings add a continuum on top)")

        layers = {i: f"layer {i} ({arch.layers[i]['type']})" for i in arch.weight_layers}
        layer = st.selectbox("Layer to show", list(layers), format_func=layers.get, key="sym_layer")
        name = f"{layer}.weight"
        st.plotly_chart(P.weight_heatmaps(arch.unflatten(theta)[name].numpy(), arch.unflatten(moved)[name].numpy(),
                                          layers[layer]), key="sym_heatmaps")
        st.markdown(
            "**Before and after.** Each row is one unit's incoming weights (for a conv layer, its kernel "
            "unrolled). A permutation shuffles the rows of this layer and, for the layer after it, the "
            "columns, so every matrix except the input layer's changes in both directions; a rescaling "
            "stretches a row by `s` and the matching column of the next layer by `1/s`; a sign flip negates "
            "both. The two pictures look unrelated, yet the network computes exactly the same outputs: "
            "reading a model's weights one coordinate at a time is meaningless unless the basis is fixed.")

        labels, dists, gaps = [], [], []
        for subset in [(k,) for k in valid_kinds] + ([tuple(valid_kinds)] if len(valid_kinds) > 1 else []):
            other = S.apply_symmetry(arch, theta, S.random_symmetry(arch, seed=int(seed), kinds=subset))
            labels.append(" + ".join(KIND_LABELS[k] for k in subset))
            dists.append(float((other - theta).norm()))
            gaps.append(S.equivalence_gap(arch, theta, other, x))
        st.plotly_chart(P.distance_vs_output(labels, dists, gaps), key="sym_dist_vs_out")
        st.markdown(
            "**Distance versus function.** For each kind of symmetry a random group element is applied to "
            "the same model. The red bars are Euclidean distances in weight space, comparable to the "
            "distance between two unrelated models; the green bars are the largest change in any output, "
            "at the level of float32 rounding (about 1e-6). Weight-space distance is therefore a poor "
            "measure of how different two networks are, until the symmetry is taken out by alignment or a "
            "canonical form.")


# ------------------------------------------------------------------ two models
@st.cache_data(show_spinner="Aligning ...", max_entries=32)
def align_pair(zoo_path: str, fp: str, row_a: int, row_b: int, method: str, kinds: tuple[str, ...]) -> dict:
    z = ui.open_zoo(zoo_path)
    a, b = z.weights[row_a].float(), z.weights[row_b].float()
    if method == "weight":
        aligned, g = A.weight_matching(z.arch, a, b, return_perm=True, kinds=kinds)
    else:
        aligned, g = A.activation_matching(z.arch, z.task, a, b, return_perm=True, kinds=kinds)
    out = {"matrices": A.matching_matrices(z.arch, a, b, g), "before": S.layer_distances(z.arch, a, b),
           "after": S.layer_distances(z.arch, a, aligned),
           "gap": S.equivalence_gap(z.arch, b, aligned, z.task.x_test if z.task is not None else None)}
    if z.task is not None:
        from wslviz.understand.landscape import interpolate, loss_barrier

        out["barrier_before"] = loss_barrier(interpolate(z.arch, z.task, a, b, steps=11))
        out["barrier_after"] = loss_barrier(interpolate(z.arch, z.task, a, aligned, steps=11))
    return out


KIND_SETTINGS = {"permutations only": ("permutation",), "permutations + scale/sign": S.KINDS}

with tabs[1]:
    d1, d2 = st.columns(2)
    row_a = d1.selectbox("Reference A", options, index=defaults[0], format_func=label, key="sym_a")
    row_b = d2.selectbox("Model B (re-expressed in A's basis)", options, index=defaults[min(1, len(defaults) - 1)],
                         format_func=label, key="sym_b")
    e1, e2 = st.columns(2)
    methods = {"weight": "weight matching"} | ({"activation": "activation matching"} if zoo.task is not None else {})
    method = e1.radio("Method", list(methods), format_func=methods.get, horizontal=True, key="sym_method")
    setting = e2.radio("Symmetries undone", list(KIND_SETTINGS), horizontal=True, key="sym_align_kinds")
    if st.button("Align B to A", type="primary", key="sym_align"):
        st.session_state["sym_pair"] = (path, fingerprint, row_a, row_b, method, KIND_SETTINGS[setting])
    pair = st.session_state.get("sym_pair")
    if pair is not None and pair[:2] == (path, fingerprint):
        res = align_pair(*pair)
        layers_before = {k: float(v[0]) for k, v in res["before"].items() if k != "total"}
        layers_after = {k: float(v[0]) for k, v in res["after"].items() if k != "total"}
        n1, n2, n3 = st.columns(3)
        n1.metric("Distance A–B", f"{float(res['after']['total'][0]):.3f}",
                  delta=f"{float(res['after']['total'][0] - res['before']['total'][0]):.3f} by alignment",
                  delta_color="inverse")
        n2.metric("Max output change of B", f"{res['gap']:.1e}", help="Aligned B against B as trained")
        if "barrier_before" in res:
            n3.metric("Loss barrier A–B", f"{res['barrier_after']:.4f}",
                      delta=f"{res['barrier_after'] - res['barrier_before']:.4f} by alignment", delta_color="inverse")
        mats = res["matrices"]
        st.plotly_chart(P.units_moved_bars([m["group"] for m in mats], [m["moved"] for m in mats],
                                           [m["size"] for m in mats]), key="sym_moved")
        st.plotly_chart(P.layer_distance_bars(list(layers_before), list(layers_before.values()),
                                              list(layers_after.values())), key="sym_layer_dist")
        st.markdown(
            "**Units moved and distance per layer.** Independent training runs start from different random "
            "initialisations, so nothing ties unit 3 of A to unit 3 of B: the matching typically moves "
            "almost every unit. After alignment every layer is closer to the reference (green against "
            "red); the function of B is unchanged (the output change above is rounding). What distance "
            "remains is genuine difference between the two solutions, and it is what the Landscape page's "
            "barrier responds to.")
        group = st.selectbox("Hidden layer", range(len(mats)), format_func=lambda i: mats[i]["group"],
                             key="sym_group")
        m = mats[group]
        st.plotly_chart(P.matching_matrix(m["similarity"], m["assignment"], f"Matching matrix: {m['group']}"),
                        key="sym_matrix")
        st.markdown(
            "**Matching matrix.** Cell (j, k) is the cosine similarity between unit j of A and unit k of B, "
            "comparing their incoming weights with every other layer already aligned. Weight matching "
            "solves a linear assignment problem per layer (maximise the summed similarity, one partner per "
            "unit) and repeats over the layers until nothing improves (Git Re-Basin, Algorithm 1). The "
            "black squares are the chosen partners: each row's mark usually sits on a bright cell, and the "
            "marks form a permutation matrix, because a unit can only be renamed, never duplicated.")
    else:
        st.info("Pick two checkpoints and press **Align B to A**.")


# ------------------------------------------------------------------ the zoo
@st.cache_resource(show_spinner=False, max_entries=16)
def spread_slot(zoo_path: str, fp: str, rows: tuple[int, ...]) -> dict:
    return {}


with tabs[2]:
    n_max = len(final)
    f1, f2 = st.columns([3, 2])
    n_models = f1.slider("Final checkpoints to include", 2, max(n_max, 2), min(48, n_max), key="sym_zoo_n",
                         disabled=n_max < 2)
    f2.caption("The reference is the first included model; every other model is aligned to it.")
    rows = tuple(final[:n_models])
    store = spread_slot(path, fingerprint, rows)
    if n_max < 2:
        st.info("The zoo has fewer than two final checkpoints.")
    elif st.button("Align the zoo", type="primary", key="sym_zoo_go") and "value" not in store:
        holder = st.empty()
        with holder:
            store["value"] = A.symmetry_spread(arch, zoo.weights[list(rows)].float(),
                                               progress=ui.progress_callback("Aligning models"))
        holder.empty()
    if "value" in store:
        spread = store["value"]
        st.plotly_chart(P.distance_distributions(spread), key="sym_spread")
        table = pd.DataFrame({"setting": list(spread),
                              "median distance": [float(np.median(d)) for d in spread.values()],
                              "mean distance": [float(np.mean(d)) for d in spread.values()]})
        st.dataframe(table, hide_index=True)
        st.markdown(
            "**How much of the spread is symmetry.** Each histogram counts the Euclidean distances between "
            "all pairs of the chosen models. As trained (red), the models sit far apart. Expressing every "
            "model in the reference's basis by weight matching removes the arbitrary unit order "
            "(permutations), and for ReLU or tanh networks also the arbitrary unit scales or signs; the "
            "distribution shifts left. The canonical unit order needs no reference: every model "
            "independently sorts its units by incoming-weight norm, which is cheaper but much cruder than "
            "matching (similar units of two models rarely get the same rank). The shift under matching is "
            "the part of the zoo's diversity that is not a difference in function at all, which is why "
            "weight-space methods (embeddings, property predictors, generators) work better on aligned "
            "weights.")
