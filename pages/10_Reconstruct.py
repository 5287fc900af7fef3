"""Reconstruct: what a checkpoint remembers of its training data. DeepInversion brings back inputs from the weights
alone; a student distilled from them, against one distilled from noise, measures what they carry."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from wslviz import ui
from wslviz.plots import reconstruct as P
from wslviz.scale import cost
from wslviz.understand import inversion as I

st.title("Reconstruct")
ui.teaching("reconstruct")

zoo = ui.require_zoo()
arch = zoo.arch
if not arch.has_forward or zoo.task is None:
    st.warning("Reconstruction runs the network and compares with its training data: this zoo needs a forward and "
               "a task (attach one on the home page).")
    st.stop()
if not arch.has_batchnorm:
    st.info(f"{arch.describe()} has no BatchNorm layer, so its weights keep no running statistics of the data to "
            "match: DeepInversion has nothing to invert here. Open `digits-resnet` (BatchNorm ResNets) to see it work.")
    st.stop()

options = list(range(zoo.n_checkpoints))
c1, c2, c3, c4 = st.columns([3, 2, 2, 1])
row = c1.selectbox("Checkpoint", options, index=ui.default_rows(zoo, 1)[0],
                   format_func=lambda r: ui.checkpoint_label(zoo, r), key="rec_row")
per_class = c2.slider("Inputs per class", 1, 20, 4, key="rec_per_class")
steps = c3.select_slider("Optimisation steps", [20, 50, 100, 200, 400, 800], 200, key="rec_steps")
seed = int(c4.number_input("Seed", 0, 10_000, 0, key="rec_seed"))
n_classes = arch.output_dim
# each step a forward and a backward pass of the network alone on the batch of inputs
ok = ui.cost_gate(zoo, "rec", [(cost.FORWARD_BACKWARD * steps, per_class * n_classes, False)])
run = st.button("Invert the checkpoint", type="primary", key="rec_go", disabled=not ok)
key = ("invert", row, per_class, steps, seed)
inversion = ui.on_request(zoo, "reconstruct", key,
                          partial(I.invert, arch, zoo.weights[row].float(), per_class * n_classes, steps,
                                  random_state=seed),
                          f"Inverting {per_class * n_classes} inputs", run)
if inversion is None:
    st.info(f"Press **Invert the checkpoint**: {per_class * n_classes} inputs start as noise and are optimised for "
            f"{steps} steps towards their classes and the BatchNorm statistics the checkpoint recorded.")
    st.stop()

x_train, _ = zoo.task.split("train")
nearest, distances = I.nearest_examples(inversion.images, x_train)
st.caption(f"Mean confidence of the checkpoint in the classes asked for: {float(inversion.confidence.mean()):.3f}; "
           f"remaining BatchNorm statistics mismatch {inversion.bn_loss:.3f}; median distance to the nearest real "
           f"training example {float(np.median(distances)):.2f} (0: the same pattern, about 1.4: unrelated).")
shape = tuple(arch.input_shape)
if len(shape) == 3:
    order = np.argsort(inversion.labels.numpy(), kind="stable")
    ui.chart(P.inversion_pairs(inversion.images[order].mean(1).numpy(), x_train[nearest[order]].mean(1).numpy(),
                               inversion.labels[order].tolist(), distances[order],
                               columns=min(10, len(order))), key="rec_pairs")
else:
    st.dataframe({"class": inversion.labels.numpy(), "confidence": inversion.confidence.numpy(),
                  "nearest training example": nearest, "distance": distances}, key="rec_table")

st.subheader("Distil a student from the inverted inputs alone")
d1, d2 = st.columns([2, 3])
epochs = d1.select_slider("Epochs", [10, 30, 50, 100, 150], 30, key="rec_epochs")
d2.caption("A fresh network of the same architecture learns the checkpoint's softened outputs on these inputs only "
           "(no labels, no real data); a second one learns them on as many noise inputs, the baseline.")
# each epoch: forward and backward over the inputs in batches of 64, for two students
batches = -(-len(inversion.images) // 64)
ok = ui.cost_gate(zoo, "rec_distil", [(2 * cost.FORWARD_BACKWARD * epochs * batches, 64, False), (3, "test")])
scores = ui.on_request(zoo, "distil", ("distil", *key, epochs),
                       partial(I.distillation_scores, arch, zoo.task, zoo.weights[row].float(), inversion.images,
                               epochs, seed),
                       "Distilling two students", st.button("Distil", key="rec_distil", disabled=not ok))
if scores is not None:
    st.dataframe(scores.round(4), hide_index=True, key="rec_scores")
    inverted, noise = (float(scores["test accuracy"].iloc[i]) for i in (1, 2))
    st.markdown(f"The student that saw only the inverted inputs reaches **{inverted:.3f}** on the real test split, "
                f"the one that saw noise **{noise:.3f}**: "
                + ("the inverted inputs carry the task." if inverted > noise + 0.1 else
                   "with these settings the inverted inputs carry little more than noise; invert more inputs, "
                   "or for longer."))
