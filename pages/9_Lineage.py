"""Lineage: which checkpoint was fine-tuned from which, recovered from the weights alone (MoTHer), as an atlas."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from wslviz import ui
from wslviz.plots import lineage as P
from wslviz.plots.embedding import rows_from_selection
from wslviz.understand import lineage as LN

MAX_NODES = 200
CHART_KEY = "lin_chart"
SCORE_LABELS = {"kurtosis": "kurtosis (MoTHer)", "centrality": "centrality", "none": "none (undirected)"}

st.title("Lineage")
ui.teaching("lineage")

zoo = ui.require_zoo()
meta = zoo.metadata
finals = np.sort(zoo.final_index())
selection = ui.get_selection()
nodes = finals
if len(finals) > MAX_NODES:
    picked = finals[np.isin(zoo.model_ids[finals], zoo.model_ids[selection])] if selection else np.array([])
    nodes = picked[:MAX_NODES] if len(picked) >= 2 else finals[:MAX_NODES]
    st.info(f"This zoo has {len(finals):,} models; the atlas shows {len(nodes)} of them "
            + ("(the models of the linked selection)." if len(picked) >= 2 else
               f"(the first {MAX_NODES}; select models on Projections to choose others)."))
if len(nodes) < 2:
    st.info("Lineage relates models to each other: this zoo has one model. Open a zoo of several models.")
    st.stop()

c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
score = c1.selectbox("direction score", LN.SCORES, format_func=SCORE_LABELS.get, key="lin_score",
                     help="What says which of two relatives is the parent (see About this page).")
distance = c2.selectbox("distance", LN.DISTANCES, key="lin_distance",
                        help="layer-max: MoTHer's sum over weight tensors of the largest absolute difference.")
knows = zoo.arch.knows_symmetries
aligned = c3.toggle("align", value=knows, disabled=not knows, key="lin_aligned",
                    help="Compare models after weight matching (undoes permutations)" if knows else
                    "This architecture's symmetries are unknown: models are compared as they are.")
threshold = c4.number_input("family cut", min_value=0.0, value=0.0, key="lin_threshold",
                            help="Distance above which models are in different families; 0: chosen from the zoo's "
                                 "own distances (the largest jump).")
columns = list(meta.columns)
default_color = next((c for c in ("family", "task", "test_acc") if c in columns), columns[0])
c5, c6 = st.columns(2)
color_by = c5.selectbox("colour by", columns, index=columns.index(default_color), key="lin_color")
size_by = c6.selectbox("size by", [None, *columns], key="lin_size", format_func=lambda c: c or "(constant)")
ok = not (aligned and knows) or ui.cost_gate(zoo, "lin", matchings=len(nodes) * (len(nodes) - 1) / 2)
run = st.button("Recover the lineage", type="primary", key="lin_go", disabled=not ok)
key = ("lineage", score, distance, bool(aligned), float(threshold), tuple(int(r) for r in nodes))
lin = ui.on_request(zoo, "lineage", key, partial(LN.lineage, zoo, score, threshold or None, bool(aligned), nodes,
                                                 distance), "Recovering the lineage", run)
if lin is None:
    st.info(f"Press **Recover the lineage** to relate the {len(nodes)} models "
            + ("(pairwise weight matching first)." if aligned and knows else "."))
    st.stop()

truth = LN.true_parents(zoo, lin)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Families", int(lin.family.max()) + 1)
m2.metric("Models", len(lin.rows))
m3.metric("Family cut", "none" if not np.isfinite(lin.threshold) else f"{lin.threshold:.3g}",
          help="Chosen from the zoo's own distances unless given" + ("" if np.isfinite(lin.threshold) else
                                                                     ": no jump large enough, one family"))
m4.metric("Median edge confidence", f"{np.nanmedian(lin.confidence):.2f}" if (lin.parent >= 0).any() else "-")
if truth is not None:
    s = LN.lineage_scores(lin, truth)
    n1, n2, n3 = st.columns(3)
    n1.metric("Edges right", f"{s['edge_accuracy']:.0%}", help="Models whose recovered parent is the true one")
    n2.metric("Directions right", f"{s['direction_accuracy']:.0%}",
              help="Recovered edges that are true edges up to direction, pointing the right way")
    n3.metric("Families right", "yes" if s["families_exact"] == 1.0 else "no")

labels = [ui.checkpoint_label(zoo, int(r)) for r in lin.rows]
sub = meta.iloc[lin.rows].reset_index(drop=True)
fig = P.lineage_figure(lin.parent, lin.family, lin.confidence, labels, lin.rows, sub[color_by],
                       sub[size_by] if size_by else None, truth, selection,
                       title=f"Recovered lineage ({SCORE_LABELS[score]}, {distance} distance)")
event = ui.chart(fig, key=CHART_KEY, on_select="rerun", selection_mode=("points", "box", "lasso"))
chosen = rows_from_selection(event.get("selection") if event else None)
if chosen and chosen != selection:
    ui.set_selection(chosen)
    st.rerun()

if score == "kurtosis":
    story = [f"family {r.family}: kurtosis {r.root_score:.3f} at the root, {r.leaf_score:.3f} on average at the "
             "leaves, so its fine-tunes " + ("added outliers (parents have the lower kurtosis)." if r.orientation > 0
                                            else "removed outliers (parents have the higher kurtosis).")
             for r in LN.family_summary(lin).itertuples() if r.size > 1]
    if story:
        st.markdown("**The direction, with this zoo's numbers.** " + " ".join(story[:6])
                    + (f" (and {len(story) - 6} more families)" if len(story) > 6 else ""))

node = {int(r): i for i, r in enumerate(lin.rows)}
edges = lin.edges
edges.insert(0, "child label", [labels[node[r]] for r in edges["child_row"]])
if truth is not None:
    edges["true parent"] = [lin.model_ids[truth[node[r]]] if truth[node[r]] >= 0 else None
                            for r in edges["child_row"]]
st.dataframe(edges, hide_index=True, column_config=ui.number_columns(edges))
ui.download_csv(edges, f"{zoo.name}-lineage")
