"""Reconstruct: what a checkpoint remembers of its training data. DeepInversion brings back inputs from the weights
alone (a student distilled from them, against one distilled from noise, measures what they carry); on a homogeneous
network, the margin (KKT) conditions bring back training examples themselves."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st
import torch

from wslviz import ui
from wslviz.core.evaluation import decision_grid
from wslviz.plots import reconstruct as P
from wslviz.scale import cost
from wslviz.understand import inversion as I
from wslviz.understand import reconstruction as R

st.title("Reconstruct")
ui.teaching("reconstruct")

zoo = ui.require_zoo()
arch = zoo.arch
if not arch.has_forward or zoo.task is None:
    st.warning("Reconstruction runs the network and compares with its training data: this zoo needs a forward and "
               "a task (attach one on the home page).")
    st.stop()

METHODS = ("DeepInversion: BatchNorm statistics", "Training examples: margin conditions")
c1, c2 = st.columns([3, 3])
row = c1.selectbox("Checkpoint", list(range(zoo.n_checkpoints)), index=ui.default_rows(zoo, 1)[0],
                   format_func=lambda r: ui.checkpoint_label(zoo, r), key="rec_row")
method = c2.radio("Method", METHODS, index=0 if arch.has_batchnorm else 1, horizontal=True, key="rec_method")


FRAMES = 8  # snapshots kept along an optimisation, to watch the inputs form


def shown_frame(final: torch.Tensor, frames: torch.Tensor | None, frame_steps: tuple[int, ...], what: str,
                key: str) -> torch.Tensor:
    """``final`` or, as the user slides back, the snapshot after an earlier step: the inputs forming."""
    if frames is None or len(frame_steps) < 2:
        return final
    step = st.select_slider(f"Watch them form: the {what} after step", frame_steps, frame_steps[-1], key=key)
    return frames[frame_steps.index(step)]


def margin_conditions() -> None:
    """Candidates and multipliers solved for the KKT conditions of the checkpoint's margin problem, matched to the
    real training examples, against as many random candidates."""
    weights = zoo.weights[row].float()
    problem = R.homogeneity_problem(arch, weights)
    if problem:
        st.info(f"The margin conditions do not apply to this checkpoint: {problem}. `benchmarks/"
                "reconstruction_table.py` trains a bias-free MLP where they do.")
        st.stop()
    x_train, y_train = zoo.task.split("train")
    k1, k2, k3 = st.columns([2, 2, 1])
    per_example = k1.select_slider("Candidates per training example", [1, 2, 4], 2, key="rec_kkt_per")
    steps = k2.select_slider("L-BFGS iterations", [25, 100, 300, 1000], 300, key="rec_kkt_steps")
    seed = int(k3.number_input("Seed", 0, 10_000, 0, key="rec_kkt_seed"))
    n = per_example * len(x_train)
    # each iteration: about one forward, one gradient with its graph and one backward through it, on n candidates
    ok = ui.cost_gate(zoo, "rec_kkt", [(3 * cost.FORWARD_BACKWARD * steps, n, False)])
    run = st.button("Solve the margin conditions", type="primary", key="rec_kkt_go", disabled=not ok)
    rec = ui.on_request(zoo, "reconstruct", ("kkt", row, per_example, steps, seed),
                        partial(R.reconstruct_training_data, arch, weights, zoo.task, n, steps, random_state=seed,
                                frames=FRAMES),
                        f"Solving for {n} candidates", run)
    if rec is None:
        st.info(f"Press **Solve the margin conditions**: {n} candidates and their multipliers are optimised until "
                "the checkpoint's weights equal the combination of its gradients at them that the conditions ask "
                f"for; then each of the {len(x_train)} training examples is matched to its nearest candidate.")
        st.stop()
    found = R.recovery(rec.inputs, x_train)
    noise = torch.randn(rec.inputs.shape, generator=torch.Generator().manual_seed(seed + 1))
    baseline = R.recovery(noise, x_train)
    st.markdown(f"**{int(found['recovered'].sum())} of {len(found)}** training examples recovered (a candidate "
                f"within {R.RECOVERY_DISTANCE} of their direction), against {int(baseline['recovered'].sum())} by "
                f"as many random candidates. Remaining residual {rec.residual:.1e} (0: the conditions hold exactly).")
    shape = tuple(arch.input_shape)
    if len(shape) == 3 or shape == (2,):
        candidates = shown_frame(rec.inputs, rec.frames, rec.frame_steps, "candidates", "rec_kkt_frame")
        near = R.recovery(candidates, x_train)
    if len(shape) == 3:
        shown = near.sort_values("distance").head(40)
        images = candidates[shown["candidate"].tolist()].mean(1).numpy()
        ui.chart(P.inversion_pairs(images, x_train[shown["example"].tolist()].mean(1).numpy(),
                                   y_train[shown["example"].tolist()].tolist(), shown["distance"].to_numpy(),
                                   columns=10, title="Candidates, captioned class · distance, above the training "
                                                     "example they are nearest to"), key="rec_kkt_pairs")
    elif shape == (2,):
        scale = float(x_train.norm(dim=1).median())
        points = R.directions(candidates).float() * scale
        xs, ys, classes = decision_grid(arch, weights, torch.cat([x_train, points]))
        ui.chart(P.candidates_2d(xs, ys, classes[0], x_train.numpy(), y_train.numpy(), points.numpy(),
                                 rec.labels.numpy(), near["recovered"].to_numpy()), key="rec_kkt_2d")
    st.dataframe(found.assign(**{"class": y_train.numpy()}), hide_index=True, key="rec_kkt_table")


if method == METHODS[1]:
    margin_conditions()
    st.stop()
if not arch.has_batchnorm:
    st.info(f"{arch.describe()} has no BatchNorm layer, so its weights keep no running statistics of the data to "
            "match: DeepInversion has nothing to invert here. Open `digits-resnet` (BatchNorm ResNets) to see it work.")
    st.stop()

c2, c3, c4 = st.columns([2, 2, 1])
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
                                  random_state=seed, frames=FRAMES),
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
    images = shown_frame(inversion.images, inversion.frames, inversion.frame_steps, "inputs", "rec_frame")
    nearest, distances = I.nearest_examples(images, x_train)
    order = np.argsort(inversion.labels.numpy(), kind="stable")
    ui.chart(P.inversion_pairs(images[order].mean(1).numpy(), x_train[nearest[order]].mean(1).numpy(),
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
