"""Symmetry: apply a random permutation / rescaling / sign flip to one model and watch the weights move
while the function stays; align two models and see the matching; measure how much of a zoo's spread is
only symmetry."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from wslviz import ui
from wslviz.plots import lora as PL
from wslviz.plots import symmetry as P
from wslviz.scale import cost
from wslviz.ui import texts
from wslviz.understand import align as A
from wslviz.understand import landscape as L
from wslviz.understand import lowrank, summaries
from wslviz.understand import repair as R
from wslviz.understand import symmetry as S

st.title("Weight-space symmetries")
ui.teaching("symmetry")

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

options = list(range(zoo.n_checkpoints))
final = [int(r) for r in zoo.final_index()]
defaults = ui.default_rows(zoo, 2)
defaults += [defaults[-1]] * (2 - len(defaults))
valid_kinds = [k for k in S.KINDS if any(k in g.kinds for g in spec.groups)]
# short labels: a multiselect chip truncates long ones (the help says which activations allow which kind)
# a unit scale passes a ReLU-like activation; LoRA's rank units have none (their scale is GL(r)'s diagonal)
RELU_SCALES = any(g.activation for g in spec.groups if "scale" in g.kinds)
KIND_LABELS = {"permutation": "permutation", "scale": "ReLU rescaling" if RELU_SCALES else "rescaling",
               "sign": "sign flip"}
# undoing every valid kind first: the setting the Landscape page's weight-matched path uses
KIND_SETTINGS = {"permutations + scale/sign": S.KINDS, "permutations only": ("permutation",)}


def delta(change: float, digits: int) -> str | None:
    """A metric's change "by alignment", or None when it rounds to zero (Streamlit colours "0.0000" as a rise)."""
    return f"{change:.{digits}f} by alignment" if round(change, digits) != 0 else None


def gap_text(gap: float) -> str:
    """An output difference as shown, or why there is none (a network that cannot run)."""
    return "— (no forward)" if np.isnan(gap) else f"{gap:.1e}"


def label(r: int) -> str:
    return ui.checkpoint_label(zoo, r)


units = "hidden layer(s)" if arch.weight_layers else "groups of units"  # adapters: rank units, no layers
st.caption(f"**{zoo.name}**: {arch.describe()}; {len(spec.groups)} {units} with "
           f"{', '.join(f'{g.size:,}' for g in spec.groups)} units; symmetries here: "
           f"{', '.join(KIND_LABELS[k] for k in valid_kinds)}.")
with st.expander(f"The symmetry group: {len(spec.groups)} permutation groups, 10^{S.group_size_log10(arch):.1f} "
                 "elements; what stays fixed"):
    st.markdown("Derived from the architecture (for module architectures, from its traced graph): each group "
                "permutes the listed tensor axes together; attention heads move as wholes, tied groups share "
                "the head order. The second table lists the axes no permutation may move, and why.")
    groups_table = S.group_table(spec)
    st.dataframe(groups_table, hide_index=True, key="sym_groups", column_config=ui.number_columns(groups_table))
    st.dataframe(S.fixed_table(spec), hide_index=True, key="sym_fixed")
tabs = st.tabs(["One model: apply a symmetry", "Two models: align", "The zoo: spread before and after"]
               + (["Low rank: any invertible G"] if arch.has_invariants else []))


def bump_seed() -> None:
    st.session_state["sym_seed"] = int(st.session_state.get("sym_seed", 0)) + 1


with tabs[0]:
    c1, c2, c3 = st.columns([3, 3, 2])
    row = c1.selectbox("Checkpoint", options, index=defaults[0], format_func=label, key="sym_model")
    kinds = c2.multiselect("Symmetries to apply", valid_kinds, default=valid_kinds, format_func=KIND_LABELS.get,
                           key="sym_kinds", help="Permutations of hidden units (any activation); rescalings of "
                           "a unit's in- and outgoing weights by s and 1/s (ReLU-like activations); sign flips of "
                           "both (odd activations such as tanh).")
    st.session_state.setdefault("sym_seed", 0)
    seed = int(c3.number_input("Seed", 0, 10_000, key="sym_seed"))
    st.button("Apply another random symmetry", on_click=bump_seed, key="sym_apply", type="primary")
    if not kinds:
        st.info("Pick at least one kind of symmetry.")
    else:
        theta = zoo.weights[row].float()
        moved = S.apply_symmetry(arch, theta, S.random_symmetry(arch, seed=seed, kinds=kinds))
        x = zoo.task.x_test if zoo.task is not None else None
        m1, m2, m3 = st.columns(3)
        m1.metric("Weight distance ‖θ − g·θ‖", f"{float((moved - theta).norm()):.3f}",
                  help=f"‖θ‖ = {float(theta.norm()):.3f}")
        m2.metric("Max output difference", gap_text(S.equivalence_gap(arch, theta, moved, x)),
                  help="Largest |f(x; θ) − f(x; g·θ)| over "
                  + ("the test inputs" if x is not None else "256 random probe inputs"))
        m3.metric("Permutation symmetries", f"10^{S.group_size_log10(arch):.1f}",
                  help="Product over hidden layers of n! (scalings add a continuum on top)")

        # the layers whose weights the groups move (for adapters, no network layer: their A factors)
        shown = arch.weight_layers or sorted({g.layer for g in spec.groups})
        hidden = [i for i in shown if i in {g.layer for g in spec.groups}]
        layers = {i: f"layer {i} ({arch.layers[i]['type']}" + (", hidden)" if i in hidden else ")") for i in shown}
        layer = st.selectbox("Layer to show", list(layers), index=list(layers).index(hidden[-1]) if hidden else 0,
                             format_func=layers.get, key="sym_layer")
        name = arch.weight_name(layer)
        ui.chart(P.weight_heatmaps([arch.unflatten(theta)[name].numpy(), arch.unflatten(moved)[name].numpy()],
                                   ("original", "after the symmetry"), f"{layers[layer]}: weights before and after",
                                   shared=False), key="sym_heatmaps")
        st.markdown(
            "**Before and after.** Each row is one unit's incoming weights (for a conv layer, its kernel unrolled). "
            "A permutation shuffles the rows of this layer and, for the layer after it, the columns: a hidden "
            "layer's matrix changes in both directions, the input layer's only in its rows and the output layer's "
            "only in its columns (its rows are the network's outputs, which never move); a rescaling stretches a "
            "row by `s` and "
            "the matching column of the next layer by `1/s`; a sign flip negates both. The two pictures look "
            "unrelated, yet the network computes exactly the same outputs. Each panel has its own colour range "
            "(± its largest |w|, in its title): a rescaling changes the weights' magnitudes, and one shared range "
            "would wash out the other panel.")
        effects = summaries.symmetry_effects(arch, theta, kinds, seed, x)
        ui.chart(P.distance_vs_output([" + ".join(KIND_LABELS[k] for k in ks) for ks in effects["kinds"]],
                                      effects["weight_distance"], effects["output_difference"]),
                 key="sym_dist_vs_out")
        st.markdown(
            "**Distance versus function.** For each kind of symmetry a random group element is applied to the same "
            "model. The red bars are Euclidean distances in weight space, comparable to the distance between two "
            "unrelated models; the green bars are the largest change in any output, at the level of float32 "
            "rounding. Weight-space distance is therefore a poor measure of how different two networks are, until "
            "the symmetry is taken out by alignment or a canonical form.")

with tabs[1]:
    if zoo.n_checkpoints < 2:
        st.info("This zoo has one checkpoint, so A and B are the same model: aligning it with itself moves no unit "
                "and leaves distance 0. Open a zoo with two or more models to compare two networks.")
    d1, d2 = st.columns(2)
    row_a = d1.selectbox("Reference A", options, index=defaults[0], format_func=label, key="sym_a")
    row_b = d2.selectbox("Model B (re-expressed in A's basis)", options, index=defaults[1], format_func=label,
                         key="sym_b")
    e1, e2 = st.columns(2)
    methods = {"weight": "weight matching"} | ({"activation": "activation matching"}
                                               if zoo.task is not None and arch.matches_activations else {})
    method = e1.radio("Method", list(methods), format_func=methods.get, horizontal=True, key="sym_method")
    setting = e2.radio("Symmetries undone", list(KIND_SETTINGS), horizontal=True, key="sym_align_kinds")
    # the report's barriers: two straight paths, corrected as the Landscape page's are by default
    ok = ui.cost_gate(zoo, "sym_align", cost.path_work(arch, zoo.task, 2 * L.BARRIER_STEPS, ("test",),
                                                       R.default_method(arch)) if zoo.task is not None else [], 1)
    run = st.button("Align B to A", type="primary", key="sym_align", disabled=not ok)
    res = ui.on_request(zoo, "symmetry-pair", ("align", row_a, row_b, method, setting),
                        partial(summaries.alignment_report, arch, zoo.task, zoo.weights[row_a], zoo.weights[row_b],
                                method, KIND_SETTINGS[setting]), "Aligning B to A", run)
    if res is None:
        st.info("Pick two checkpoints and press **Align B to A**.")
    else:
        total_before, total_after = res.distance_before, res.distance_after
        n1, n2, n3 = st.columns(3)
        n1.metric("Distance A–B", f"{total_after:.3f}", delta=delta(total_after - total_before, 3),
                  delta_color="inverse")
        n2.metric("Max output change of B", gap_text(res.gap), help="Aligned B against B as trained")
        if res.barrier_before is not None:
            n3.metric(f"Loss barrier A–B ({R.LABELS[res.correction]})", f"{res.barrier_after:.4f}",
                      delta=delta(res.barrier_after - res.barrier_before, 4), delta_color="inverse",
                      help="The same definition, resolution (25 points) and correction of the points between the "
                           "models as the Landscape page's paths by default.")
        mats = res.matrices
        ui.chart(P.units_moved_bars([m.group for m in mats], [m.moved for m in mats], [m.size for m in mats]),
                 key="sym_moved")
        names = res.layers
        ui.chart(P.layer_distance_bars(names, [float(res.before[k][0]) for k in names],
                                       [float(res.after[k][0]) for k in names]), key="sym_layer_dist")
        closer = res.closer_layers
        farther = [k for k in names if k not in closer]
        st.markdown(
            "**Units moved and distance per layer.** Independent training runs start from different random "
            "initialisations, so nothing ties unit 3 of A to unit 3 of B: the matching typically moves almost "
            f"every unit. After alignment {len(closer)} of {len(names)} layers are closer to the reference (green "
            "against red)" + (f"; {', '.join(farther)} moved away: the matching minimises the total distance, "
                              "not each layer's" if farther else "")
            + "; the function of B is unchanged (the output change above is rounding).")
        g1, g2 = st.columns([2, 1])
        group = g1.selectbox("Hidden layer", range(len(mats)), format_func=lambda i: mats[i].group,
                             key="sym_group")
        by_match = g2.toggle("order B's units by the matching", value=False, key="sym_reorder",
                             help="Columns in the matched order: the chosen partners then lie on the diagonal.")
        m = mats[group]
        ui.chart(P.matching_matrix(m.similarity, m.assignment, f"Matching matrix: {m.group}",
                                   by_match=by_match), key="sym_matrix")
        st.markdown(texts.NOTES["matching matrix"] + f" Here {m.on_row_best} of {m.size} marks sit on their "
                    "row's most similar cell: the matching maximises the total similarity over the whole network "
                    "(outgoing weights included) with one partner per unit, so a row may give up its best cell to "
                    "another row that needs it more.")
        weight = next(r.name for r in spec.groups[group].refs if r.incoming)  # this layer's incoming weights
        tensors = [arch.unflatten(w.float())[weight].numpy() for w in (zoo.weights[row_a], zoo.weights[row_b],
                                                                        res.aligned)]
        ui.chart(P.weight_heatmaps(tensors, ("A", "B as trained", "B aligned to A"),
                                   f"{m.group}: incoming weights ({weight})",
                                   units=[None, None, m.assignment]), key="sym_pair_heatmaps")
        st.markdown(
            "**A, B and B aligned to A.** Row `j` of the third panel is B's unit `assignment[j]` (hover to see "
            "which): B's rows reordered by the matching, its columns by the previous layer's matching. The "
            "aligned B resembles A row by row where the models learned the same features, although B as "
            "trained (middle) looks unrelated; it computes exactly what B computes. The three panels share one "
            "colour range, so they stay comparable.")

with tabs[2]:
    n_max = len(final)
    f1, f2 = st.columns([3, 2])
    if n_max > 2:
        n_models = f1.slider("Final checkpoints to include", 2, n_max, min(48, n_max), key="sym_zoo_n")
    else:  # a slider needs min < max: with two final checkpoints there is nothing to choose
        n_models = n_max
        f1.caption(f"{n_max:,} final checkpoint(s) in this zoo.")
    f2.caption("The reference is the first included model; every other model is aligned to it.")
    rows = final[:n_models]
    ok = n_max < 2 or ui.cost_gate(zoo, "sym_zoo", matchings=2 * (len(rows) - 1))
    run = st.button("Align the zoo", type="primary", key="sym_zoo_go", disabled=n_max < 2 or not ok)
    if n_max < 2:
        st.info("The spread needs at least two models: this zoo has one final checkpoint.")
    spread = ui.on_request(zoo, "symmetry-spread", ("spread", tuple(rows)),  # the rows copied only when run
                           lambda progress=None: A.symmetry_spread(arch, zoo.weights[rows].float(), progress=progress),
                           "Aligning models", run)
    if spread is not None:
        ui.chart(P.distance_distributions(spread), key="sym_spread")
        st.dataframe(pd.DataFrame({"setting": list(spread),
                                   "median distance": [float(np.median(d)) for d in spread.values()],
                                   "mean distance": [float(np.mean(d)) for d in spread.values()]}), hide_index=True)
        st.markdown(
            "**How much of the spread is symmetry.** Each histogram counts the Euclidean distances between all "
            "pairs of the chosen models. As trained (red), the models sit far apart. Expressing every model in the "
            "reference's basis by weight matching removes the arbitrary unit order (permutations), and for ReLU or "
            "tanh networks also the arbitrary unit scales or signs, so the distribution shifts further left (each "
            "model's distance to the reference never grows by undoing more). The canonical unit order needs no "
            "reference: every model sorts its units by incoming-weight norm, cheaper but much cruder than matching. "
            "The shift is the part of the zoo's diversity that is not a difference in function at all.")

if arch.has_invariants:
    with tabs[3]:
        st.markdown(
            "A low-rank adapter adds `delta_W = B A` to each weight of its base model, and only that product "
            "matters: for **any** invertible r x r matrix `G`, `(B G, G^-1 A)` is the same adapter (the GL(r) "
            "symmetry, Putterman et al. 2024). Permutations, scalings and rotations of the rank units are special "
            "cases; the first tab shows only those.")
        h1, h2 = st.columns([3, 1])
        gl_row = h1.selectbox("Adapter", options, index=defaults[0], format_func=label, key="sym_gl_row")
        gl_seed = int(h2.number_input("Seed", 0, 10_000, 0, key="sym_gl_seed"))
        x = zoo.task.x_test if zoo.task is not None else None
        effects = ui.result(zoo, ("gl effects", gl_row, gl_seed), lambda progress=None: lowrank.gl_effects(
            arch, zoo.weights[gl_row], ("general", "permutation", "scaling", "orthogonal"), gl_seed, x))
        ui.chart(PL.gl_effect_bars(effects), key="sym_gl_effects")
        st.markdown(
            "**What moves and what stays.** For each kind of `G` (one random element per module), the red bar is "
            "how far the factors A and B moved, relative to their size; the other bars are the relative change of "
            "the update `delta_W`, of the invariant features (its singular values, norm, energy share and "
            "canonical factors) and the largest change of any output: all at the level of float rounding.")
        st.subheader("Which adapters are close?")
        k1, k2 = st.columns([3, 2])
        n_pairs = k1.slider("Pairs of adapters", 10, 1000, 300, 10, key="sym_gl_pairs")
        scramble = k2.toggle("each adapter in random coordinates", value=False, key="sym_gl_scramble",
                             help="Re-express every adapter by its own random invertible G: the same updates, in "
                                  "the unrelated coordinates adapters from other initialisations or tools have.")
        def pairs(progress=None):
            adapters = zoo.weights[final].float()
            if scramble:
                adapters = lowrank.random_coordinates(arch, adapters, gl_seed)
            return lowrank.pair_distances(arch, adapters, n_pairs, gl_seed)

        distances = ui.result(zoo, ("gl pair distances", n_pairs, gl_seed, scramble), pairs, "Distances between pairs")
        agreement = lowrank.rank_agreement(distances)
        ui.chart(PL.distance_disagreement(distances, agreement), key="sym_gl_distances")
        st.markdown(
            f"**Raw factors against updates.** Each point is a pair of adapters: the distance between their "
            f"updates (x) against the distance between their factors as stored (red; Spearman "
            f"{agreement['raw']:.2f} with the updates) and after aligning both by canonicalisation, "
            f"`B = U sqrt(S)`, `A = sqrt(S) V^T` from the SVD of `delta_W` with signs fixed (green; "
            f"{agreement['canonical']:.2f}). Raw distances depend on the coordinates each adapter happens to be "
            "in (here the random A each fine-tuning started from): switch on *random coordinates* and every raw "
            "distance changes, while the canonical form, which needs no reference model, and the updates do not "
            "move. Much of the raw distances' agreement comes from the adapters' sizes alone (a larger update "
            "has larger factors). The canonical form is unique where the singular values are distinct; "
            "near-equal ones can swap, which is its residual noise.")
