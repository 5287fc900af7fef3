"""Merge: one model from several (averages, aligned averages with REPAIR, task arithmetic, TIES, DARE, soups,
Fisher, FedAvg), compared per task with its inputs and their ensemble."""

from __future__ import annotations

import json
from functools import partial

import streamlit as st

from wslviz import ui
from wslviz.generation import merge_lab as L
from wslviz.plots import merge as P

ABOUT = (
    "Merging makes **one** network out of several by arithmetic on their weights: no retraining, one "
    "model's cost at inference. Models fine-tuned from one base share a basin, so plain averages work "
    "(*model soups*, Wortsman et al. 2022) and *task vectors* (fine-tune minus base) can be added "
    "(*task arithmetic*, Ilharco et al. 2023); TIES (Yadav et al. 2023) trims them and settles sign "
    "conflicts first, DARE (Yu et al. 2024) drops most of their entries at random and rescales the rest, "
    "Fisher merging (Matena & Raffel 2022) weights each parameter by how much each model relies on it. "
    "Models trained from different starts must first be **aligned** (Git Re-Basin, Ainsworth et al. 2023), "
    "and their averages repaired (REPAIR, Jordan et al. 2023). Federated learning averages clients' models "
    "every round (FedAvg, McMahan et al. 2017).\n\n"
    "**What to look for:** does the merged model beat each of its inputs on the average over the tasks, and "
    "how far is it from the ensemble (which runs every input)? Open `digits-finetunes` for task vectors, "
    "`digits-federated` for FedAvg.\n\n"
    "**LoRA adapters** (open `digits-lora`) are merged on what they compute, the update `delta_W = B A` of each "
    "module, and factorised back to the adapter's rank by truncated SVD (the error of that step is shown): "
    "`(B G, G^-1 A)` is the same adapter for any invertible `G`, so averaging `A` and `B` separately mixes "
    "arbitrary coordinates. That wrong way is offered as a labelled baseline."
)

st.title("Merge")
with st.expander("About this page: merging models", expanded=ui.teaching_mode()):
    st.markdown(ABOUT)

zoo = ui.require_zoo()
if zoo.task is None:
    st.warning("Merging is judged by accuracy, and this zoo has no task: attach one on the home page.")
    st.stop()
if zoo.n_checkpoints < 2:
    st.warning("Merging needs at least two checkpoints.")
    st.stop()

labels = ui.checkpoint_labels(zoo)
default_rows, default_base = L.default_merge_rows(zoo)
selection = [r for r in ui.get_selection() if 0 <= r < zoo.n_checkpoints]
left, right = st.columns([2, 1])
methods = L.methods_for(zoo)
method = left.selectbox("Method", list(methods), format_func=methods.get, key="merge_method")
pick = selection if len(selection) >= 2 else default_rows
rows = st.multiselect("Models to merge (default: the linked selection, else the zoo's natural set)",
                      list(range(zoo.n_checkpoints)), default=pick[:2] if method == "slerp" else pick,
                      format_func=labels.__getitem__, key=f"merge_rows_{method == 'slerp'}")
base_row = default_base  # task vectors are drawn whenever the zoo names a base
if L.needs_base(zoo, method):
    base_row = right.selectbox("Base model (what the others were fine-tuned from)", list(range(zoo.n_checkpoints)),
                               index=default_base if default_base is not None else 0, format_func=labels.__getitem__,
                               key="merge_base")

options: dict = {}
with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    if method in ("task_arithmetic", "ties", "dare"):
        default_lam = 1.0 if method == "ties" else round(1.0 / max(1, len(rows)), 3)
        options["lam"] = c1.number_input("λ (scale of the task vectors)", 0.0, 5.0, default_lam, 0.01,
                                         key=f"merge_lam_{method}")
    if method == "ties":
        options["density"] = c2.slider("Density (share of each task vector kept)", 0.05, 1.0, 0.2, 0.05,
                                       key="merge_density")
    if method == "dare":
        options["drop"] = c2.slider("Drop rate", 0.0, 0.95, 0.5, 0.05, key="merge_drop")
        options["combine"] = c3.radio("Then", ["task_arithmetic", "ties"], horizontal=True, key="merge_combine")
    if method == "slerp":
        options["t"] = c1.slider("t (0 = first model, 1 = second)", 0.0, 1.0, 0.5, 0.05, key="merge_t")
    if method == "aligned":
        options["matching"] = c1.radio("Matching", ["weight", "activation"], horizontal=True, key="merge_matching")
        options["correction"] = c2.radio("Then", ["reset", "repair", "none"], horizontal=True, key="merge_correction",
                                         help="reset: recompute BatchNorm statistics; repair: REPAIR every unit's "
                                              "mean and spread (Jordan et al. 2023)")
    if method == "weighted":
        text = c1.text_input("Coefficients (comma-separated, one per model; empty = uniform)", "",
                             key="merge_coefficients")
        if text.strip():
            try:
                options["coefficients"] = [float(v) for v in text.split(",")]
            except ValueError:
                st.error("Coefficients must be numbers separated by commas.")
                st.stop()
    if method == "soup":
        c1.caption("Models join the soup in order of accuracy on a held-out fifth of the training split.")
    if method == "fisher":
        options["n_samples"] = c1.select_slider("Training inputs per model for the Fisher", [32, 64, 128, 256], 128,
                                                key="merge_fisher_n")


def merge_now(rows: tuple[int, ...], method: str, base_row: int | None, options_json: str, progress=None) -> dict:
    details: dict = {}
    merged = L.merge_rows(zoo, list(rows), method, base_row, progress=progress, details=details,
                          **json.loads(options_json))
    return {"weights": merged, **details, **L.merge_report(zoo, list(rows), merged, base_row)}


def sweep_now(rows: tuple[int, ...], method: str, base_row: int | None, values: tuple[float, ...],
              options_json: str, progress=None):
    base = zoo.weights[base_row].float() if base_row is not None else None
    return L.merge_sweep(zoo.arch, L.zoo_tasks(zoo), zoo.weights[list(rows)].float(), method, list(values), base=base,
                         progress=progress, **json.loads(options_json))


key = (tuple(int(r) for r in rows), method, base_row, json.dumps(options, sort_keys=True))
pressed = st.button("Merge", type="primary", key="merge_go")
if pressed and len(rows) < (2 if method == "slerp" else 1):
    st.error("Pick the models to merge (SLERP takes exactly two).")
    pressed = False
result = ui.on_request(zoo, "merge", ("merge", *key), partial(merge_now, *key), f"Merging by {methods[method]}",
                       pressed, errors=(ValueError, TypeError))
if result is None:
    st.info("Pick the models and a method, then press **Merge**.")
    st.stop()
done_key = ui.requested_key(zoo, "merge")[1:]
if done_key != key:
    st.caption("The result below is for the previous choice; press **Merge** to update it.")

table = result["accuracy"]
merged_avg = float(table["average"].iloc[0])
st.subheader("Accuracy per task")
verdict = "beats" if merged_avg > result["best_input"] else "does not beat"
st.markdown(f"The merged model's average accuracy over the tasks is **{merged_avg:.3f}**: it {verdict} every "
            f"input (best input {result['best_input']:.3f}); the ensemble of the inputs reaches "
            f"{float(table['average'].iloc[1]):.3f}.")
if "truncation_error" in result:
    errors = result["truncation_error"]
    st.caption("Re-factorised to the adapter's rank by truncated SVD; relative error of that step per module: "
               + ", ".join(f"{k} {v:.3f}" for k, v in errors.items()) + ".")
ui.chart(P.task_accuracy_bars(table if len(table) <= 14 else table.iloc[:14]), key="merge_bars")
st.dataframe(table.round(4), hide_index=True, key="merge_table")

if result["similarity"] is not None:
    c1, c2 = st.columns(2)
    with c1:
        ui.chart(P.similarity_heatmap(result["similarity"], [f"#{r}" for r in done_key[0]]), key="merge_similarity")
    with c2:
        ui.chart(P.sign_conflict_bars(result["conflicts"]), key="merge_conflicts")
    c2.caption("Sign conflicts at TIES' default density (the top 20% of each task vector).")

param = L.SWEEPS.get(method)
if param == "lam" and base_row is not None or param == "t" and len(rows) == 2:
    st.subheader("Sweep")
    lo, hi = (0.0, 3.0 if method == "ties" else 3.0 / max(1, len(rows))) if param == "lam" else (-0.25, 1.25)
    steps = st.slider("Points on the curve", 5, 41, 13, key="merge_sweep_steps")
    values = tuple(round(lo + (hi - lo) * i / (steps - 1), 4) for i in range(steps))
    extra = json.dumps({k: v for k, v in options.items() if k not in ("lam", "t", "matching", "correction")},
                       sort_keys=True)
    sweep_key = (key[0], method, base_row, values, extra)
    curve = ui.on_request(zoo, "merge_sweep", ("merge sweep", *sweep_key), partial(sweep_now, *sweep_key),
                          f"Merging and evaluating at {steps} values of {param}",
                          st.button(f"Sweep {param}", key="merge_sweep_go"))
    if curve is not None:
        ui.chart(P.sweep_curve(curve, curve.columns[0], result["best_input"]), key="merge_sweep_curve")

st.subheader("Export")
meta = table.iloc[:1].assign(method=done_key[1], rows=" ".join(map(str, done_key[0])), options=done_key[3])
ui.download_weights(zoo.arch, result["weights"].unsqueeze(0), meta, f"{zoo.name}-merged-{done_key[1]}")
