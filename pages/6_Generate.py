"""Generate: make new weights with several generators, evaluate them at once, and ask whether they are new."""

from __future__ import annotations

import copy
import json
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from wslviz import generation as G
from wslviz import ui
from wslviz.core import inr
from wslviz.core.zoo import checkpoint_accuracies
from wslviz.generation.novelty import nearest_pairs_grid, summary_table
from wslviz.plots import generate as P
from wslviz.plots import inr as iplots
from wslviz.plots import novelty as PN
from wslviz.ui import widgets

RUNS_KEY = "generate_runs"

st.title("Generate new weights")
ui.teaching("generate")

path = ui.current_zoo_path()
zoo = ui.require_zoo()
if zoo.n_models < 2:
    st.warning("Generators need at least two models; this zoo has one.")
    st.stop()
if zoo.task is None:
    st.warning("This zoo has no evaluation data (task), so generated models can be made and downloaded but "
               "not evaluated: attach a task (a .npz with x and y) on the home page to see accuracy and novelty.")

final = zoo.final_index()


def row_label(r: int) -> str:
    return ui.checkpoint_label(zoo, r)


# ---------------------------------------------------------------------------------------------- controls
left, right = st.columns([2, 1])
method = left.selectbox("Generator", list(G.GENERATORS), format_func=lambda m: G.GENERATORS[m].label, key="gen_method")
n = right.slider("Models to generate", 2, 64, 16, key="gen_n")
seed = right.number_input("Seed", 0, 10_000, 0, key="gen_seed")

with st.container(border=True):
    options = widgets.param_inputs(G.GENERATORS[method].params(zoo), zoo, f"gen_{method}",
                                   lambda n: ui.default_rows(zoo, n), row_label)

tuned = G.tuned_options(zoo.name, method)
if tuned and st.toggle(f"Tuned settings for {zoo.name}: " + ", ".join(f"{k}={v}" for k, v in tuned.items()), True,
                       key=f"gen_tuned_{method}", help="Chosen on a validation split (never the test split) by "
                       "benchmarks/tune_generators.py; they replace the controls above (switch off to use those)."):
    options.update(tuned)


# ---------------------------------------------------------------------------------------------- cached work
def novelty_index() -> G.NoveltyIndex:
    """The zoo aligned to its reference once, for every novelty measurement (the one result cache)."""
    return ui.result(zoo, ("novelty index",), lambda progress=None: G.NoveltyIndex(zoo).fit(progress),
                     "Aligning the zoo to the reference")


def run_generator() -> None:
    gen = G.make_generator(method, random_state=int(seed), **options)
    fit_options = json.dumps({k: v for k, v in gen.fit_params().items() if k != "random_state"}, sort_keys=True,
                             default=str)
    # a copy: sampling options are set on the generator, and the cached fit is shared
    gen = copy.copy(ui.result(zoo, ("generator", method, fit_options, int(seed)), partial(gen.fit, zoo),
                              f"Fitting {G.GENERATORS[method].label}"))
    gen.set_params(**{k: v for k, v in options.items() if k in gen.sample_params})
    weights = gen.sample(int(n), seed=int(seed))
    key = json.dumps({"method": method, "options": options, "n": int(n), "seed": int(seed)}, sort_keys=True,
                     default=str)
    run = {"key": key, "path": path, "method": method, "params": gen.get_params(), "weights": weights,
           "info": gen.sample_info_.copy()}
    if zoo.task is not None:
        index = novelty_index()
        with st.spinner("Evaluating the generated models and the noise baseline ..."):
            run["comparison"] = ui.result(zoo, ("novelty", key), lambda progress=None: G.compare_with_baseline(
                zoo, weights, index, seed=int(seed)))
    runs = [r for r in st.session_state.get(RUNS_KEY, []) if r["method"] != method and r["path"] == path]
    st.session_state[RUNS_KEY] = runs + [run]


# the generated models and their noise baseline evaluated (about ten calibration steps), each matched to the zoo
ok = zoo.task is None or ui.cost_gate(zoo, "gen", [(11 * int(n), "test")], int(n),
                                      extra="fitting the generator and, once per zoo, aligning the zoo")
if st.button("Generate", type="primary", key="gen_go", disabled=not ok):
    try:
        run_generator()
    except (ValueError, TypeError, ImportError, ModuleNotFoundError) as e:
        st.error(f"Could not generate with {method}: {e}")

runs = [r for r in st.session_state.get(RUNS_KEY, []) if r["path"] == path]
if not runs:
    st.info("Choose a generator and press **Generate**. Each generator you run is kept below for comparison.")
    st.stop()


# ---------------------------------------------------------------------------------------------- results
latest = runs[-1]
if inr.is_inr(zoo.arch):  # generated INRs are images: draw them
    st.subheader(f"Generated INRs ({latest['method']})")
    shown = latest["weights"][:24]
    ui.chart(iplots.image_grid(inr.render_weights(zoo, shown), [f"generated {i}" for i in range(len(shown))],
                               columns=12), key="gen_inr_grid")
st.subheader("Accuracy and novelty")
if zoo.task is not None:
    final_acc = checkpoint_accuracies(zoo, final)
    median = float(np.median(final_acc))
    groups = {"zoo final": final_acc}
    for r in runs:  # each generator beside its own noise baseline (calibrated to that generator's accuracy)
        groups[r["method"]] = r["comparison"]["novelty"]["accuracy"].to_numpy()
        groups[f"{P.BASELINE_PREFIX} ({r['method']})"] = r["comparison"]["baseline_novelty"]["accuracy"].to_numpy()
    summary = summary_table({r["method"]: r["comparison"] for r in runs}, G.LEARNED)
    # short headers and narrow columns (the long meaning in each header's help), the verdicts first, so the
    # whole table fits a 1366 px screen beside the sidebar
    verdicts = {"beats L2": ("beats L2", "Mean NN distance to the aligned zoo larger than the noise baseline's, "
                                         "at equal or better accuracy"),
                "beats function": ("beats fn", "Highest prediction agreement with any zoo checkpoint lower than "
                                               "the noise baseline's, at equal or better accuracy"),
                "learned": ("learned", "Fits a density or a network to the zoo (rather than interpolating or merging)")}
    numbers = {"accuracy": ("acc", "Mean test accuracy of the generated models", "%.3f"),
               "noise accuracy": ("noise acc", "Mean test accuracy of the noise baseline", "%.3f"),
               "NN distance": ("NN dist", "Mean distance to the nearest aligned zoo checkpoint", "%.3g"),
               "noise NN distance": ("noise NN", "The noise baseline's mean NN distance", "%.3g"),
               "max agreement": ("max agr", "Mean highest prediction agreement with any zoo checkpoint", "%.3f"),
               "noise max agreement": ("noise agr", "The noise baseline's mean highest agreement", "%.3f")}
    st.dataframe(summary, hide_index=True, key="gen_summary", width="stretch",
                 column_order=["generator", *verdicts, *numbers], column_config={
                     "generator": st.column_config.TextColumn("generator", width="medium", pinned=True),
                     **{c: st.column_config.CheckboxColumn(name, help=text, width="small")
                        for c, (name, text) in verdicts.items()},
                     **{c: st.column_config.NumberColumn(name, help=text, format=fmt, width="small")
                        for c, (name, text, fmt) in numbers.items()}})
    st.caption("Noise baseline (one per run): zoo models perturbed by the most Gaussian noise that keeps their "
               "mean accuracy at least that generator's (hover a header for its meaning). *Beats L2*: the "
               "generated models' mean distance to the nearest aligned zoo checkpoint (NN distance) is larger than "
               "the baseline's; *beats fn* (function): their highest prediction agreement with any zoo checkpoint "
               "is lower; both at equal or better accuracy (one test example of slack).")
    ui.chart(P.accuracy_violins(groups, reference=median), key="gen_violins")
    c = latest["comparison"]
    ui.chart(P.novelty_scatter(c["novelty"], c["baseline_novelty"], latest["method"]), key="gen_scatter")
    with st.expander(f"Per-model novelty of the latest run ({latest['method']})"):
        st.dataframe(pd.concat([latest["info"], c["novelty"]], axis=1).round(4), key="gen_table")

    st.subheader("Against the noise frontier (Zeng et al. 2025)")
    fr = ui.on_request(zoo, "generate-frontier", ("noise frontier",),
                       lambda progress=None: G.noise_frontier(zoo, novelty_index(), progress=progress),
                       "Adding noise to zoo models at a sweep of amplitudes",
                       st.button("Compute the noise frontier", key="gen_frontier_go", disabled=not ui.cost_gate(
                           zoo, "gen_frontier", [(len(G.NOISE_AMPLITUDES) * 8 * 4, "test")],
                           len(G.NOISE_AMPLITUDES) * 8 * 4)))
    if fr is None:
        st.info("Press **Compute the noise frontier** to measure zoo models plus noise at a sweep of amplitudes "
                "(once per zoo; kept for every later run).")
    else:
        measure = st.radio("Novelty", ["error_novelty", "distance"], horizontal=True, key="gen_frontier_measure",
                           format_func={"error_novelty": "error IoU (Zeng et al.)", "distance": "L2 (aligned)"}.get)
        novelties = {r["method"]: r["comparison"]["novelty"] for r in runs}
        ui.chart(PN.frontier(fr.points, fr.line(measure), novelties, measure, median), key="gen_frontier")
        st.markdown(G.frontier_statement({m: G.frontier_verdict(fr, v, median) for m, v in novelties.items()},
                                         median))

    if zoo.task.is_2d:
        st.subheader("Decision boundaries: generated model | nearest zoo model")
        nov = c["novelty"]
        show = st.slider("Generated models to show", 1, min(6, len(nov)), min(3, len(nov)), key="gen_show")
        xs, ys, classes, titles = nearest_pairs_grid(zoo, latest["weights"], nov, show)
        ui.chart(P.decision_boundaries(xs, ys, classes, titles, zoo.task.x_test.numpy(), zoo.task.y_test.numpy(),
                                       n_classes=zoo.task.n_classes), key="gen_boundaries")

st.subheader("Weights: generated vs zoo")
sets = {"zoo final": zoo.weights[final[:64]], **{r["method"]: r["weights"] for r in runs}}
if any(p.role == "weight" and len(p.shape) >= 2 for p in zoo.arch.layout):
    hist_tab, spec_tab = st.tabs(["weight distributions", "singular-value spectra"])
    with hist_tab:
        ui.chart(P.weight_distributions(zoo.arch, sets), key="gen_weight_hist")
    with spec_tab:
        ui.chart(P.spectra_by_set(zoo.arch, sets), key="gen_spectra")

st.subheader("In the projection")
c1, c2 = st.columns(2)
kind = c1.selectbox("Features", ["stats", "flat"], key="gen_proj_kind")
proj_method = c2.selectbox("Projection", ["pca", "umap", "tsne"], key="gen_proj_method")
if st.checkbox("Place the generated models in the projection", False, key="gen_proj_on"):
    try:
        with st.spinner("Projecting ..."):
            frame, refitted = G.project_with_generated(zoo, latest["weights"], kind, proj_method, int(seed))
        ui.chart(P.projection(frame, refitted, proj_method), key="gen_projection")
    except (ImportError, ModuleNotFoundError, ValueError) as e:
        st.error(f"Projection unavailable: {e}")

st.subheader("Download")
gen_zoo = G.as_zoo(zoo, latest["weights"], latest["method"], latest["params"], latest["info"])
stem = f"{zoo.name}-{latest['method']}"
c1, c2, c3 = st.columns(3)
c1.download_button("Weights (.safetensors)", G.safetensors_bytes(gen_zoo), f"{stem}.safetensors",
                   "application/octet-stream", key="gen_dl_st")
c2.download_button("Metadata (.json)", G.metadata_json(gen_zoo), f"{stem}.json", "application/json",
                   key="gen_dl_json")
c3.download_button("Native zoo (.zip)", G.zoo_archive_bytes(gen_zoo), f"{stem}.zip", "application/zip",
                   key="gen_dl_zip")
st.caption("The .zip unpacks to a native zoo folder that `wv.load_zoo` (and the home page) opens.")
