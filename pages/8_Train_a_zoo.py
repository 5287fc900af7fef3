"""Train a zoo: pick a task, an architecture and ranges of hyper-parameters; every model trains at once
with live accuracy curves, and the result becomes the current zoo (kept in this session's folder,
downloadable as a native zoo)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from wslviz import ui
from wslviz.core.arch import Architecture
from wslviz.core.evaluation import evaluate
from wslviz.core.sweep import ACTIVATIONS, MODELS, TASKS, Sweep, train_sweep
from wslviz.core.tasks import TaskError, make_task
from wslviz.formats import save_zoo
from wslviz.generation import zoo_archive_bytes
from wslviz.plots import zoo as zplots
from wslviz.ui import serve

TRAINED_KEY = "train_zoo_path"
RUNS_KEY = "train_runs"
UPLOAD = "uploaded .npz"

st.title("Train a zoo")
ui.teaching("train")

c1, c2 = st.columns(2)
task_name = c1.selectbox("Task", [*TASKS, UPLOAD], key="train_task")
model = c2.selectbox("Model", MODELS, key="train_model", format_func={"mlp": "MLP", "digits-cnn": "the digits CNN"}.get,
                     help="The digits CNN is the bundled digits-cnn architecture (8x8 images only).")
task_spec = TASKS.get(task_name)
if task_name == UPLOAD:
    data = st.file_uploader("Data (.npz with arrays x [N, d] and y [N]: integer classes, or floats for regression)",
                            type=["npz"], key="train_npz")
    if data is None:
        st.info("Upload a .npz to train on it.")
        st.stop()
    target = serve.session_folder() / "train-data.npz"
    target.write_bytes(data.getvalue())
    task_spec = {"name": "npz", "path": str(target)}
if model == "mlp":
    a1, a2, a3 = st.columns(3)
    width = a1.slider("Width (units per hidden layer)", 2, 128, 16, key="train_width")
    depth = a2.slider("Depth (hidden layers)", 1, 4, 2, key="train_depth")
    activation = a3.selectbox("Activation", ACTIVATIONS, key="train_activation")
else:
    width, depth, activation = 16, 2, "relu"

with st.container(border=True):
    h1, h2, h3 = st.columns(3)
    n_models = h1.slider("Models", 2, 256, 64, key="train_n")
    first_seed = int(h1.number_input("First seed (models get consecutive seeds)", 0, 10**6, 0, key="train_seed"))
    lr = h2.select_slider("Learning rate range", [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3], (0.003, 0.1),
                          key="train_lr")
    n_lr = h2.slider("Learning rates in the range (log-spaced)", 1, 6, 4, key="train_n_lr")
    wd = h3.select_slider("Weight decay range", [0.0, 1e-5, 1e-4, 1e-3, 1e-2], (0.0, 1e-3), key="train_wd")
    n_wd = h3.slider("Weight decays in the range", 1, 4, 2, key="train_n_wd")
    e1, e2, e3, e4 = st.columns(4)
    epochs = e1.slider("Epochs range", 1, 100, (20, 20), key="train_epochs")
    n_epochs = e2.slider("Epoch budgets in the range", 1, 4, 1, key="train_n_epochs",
                         help="Models with a shorter budget keep their checkpoints up to it: the same run, stopped "
                              "earlier.")
    batch = e3.select_slider("Batch size", [16, 32, 64, 128], 32, key="train_batch")
    optimizer = e4.radio("Optimizer", ["sgd", "adam", "adamw"], horizontal=True, key="train_opt",
                         format_func={"sgd": "SGD + momentum", "adam": "Adam", "adamw": "AdamW"}.get)

sweep = Sweep(task=task_spec, model=model, width=width, depth=depth, activation=activation, n_models=n_models,
              first_seed=first_seed, lr=lr, n_lr=n_lr, weight_decay=wd, n_wd=n_wd, epochs=epochs, n_epochs=n_epochs,
              batch_size=batch, optimizer=optimizer)
try:
    task = make_task(task_spec)
    arch_spec = sweep.architecture(task)
except (TaskError, ValueError) as e:
    st.error(str(e))
    st.stop()
st.caption(f"{n_models} models x {len(sweep.checkpoints())} checkpoint epochs, all in one batched run; "
           "the result becomes the current zoo of this session.")

if st.button("Train", type="primary", key="train_go"):
    history: list[pd.DataFrame] = []
    hp = sweep.hyperparameters()
    chart = st.empty()

    arch = Architecture(arch_spec)

    def show(epoch: int, rows: np.ndarray, weights) -> None:
        """Live curves: the test accuracy of every model at each checkpoint, as it is saved."""
        acc = evaluate(arch, task, weights)["accuracy"].numpy()
        history.append(pd.DataFrame({"model_id": rows, "epoch": epoch, "test_acc": acc,
                                     "lr": hp["lr"].to_numpy()[rows]}))
        with chart:
            ui.chart(zplots.accuracy_curves(pd.concat(history, ignore_index=True), "lr", "test_acc"),
                     key=f"train_live_{epoch}")

    progress = ui.progress_callback("Training (epochs)")
    zoo = train_sweep(sweep, name=f"{task.name}-{model}-{n_models}", progress=progress, on_checkpoint=show)
    previous = st.session_state.get(TRAINED_KEY)
    runs = st.session_state[RUNS_KEY] = st.session_state.get(RUNS_KEY, 0) + 1
    path = save_zoo(zoo, serve.session_folder() / f"trained-zoo-{runs}")
    if previous and Path(previous).is_dir():  # one trained zoo per session: the new one replaces the last
        shutil.rmtree(previous, ignore_errors=True)
    st.session_state[TRAINED_KEY] = str(path)
    ui.set_zoo(path)
    st.rerun()

trained = st.session_state.get(TRAINED_KEY)
if trained and ui.current_zoo_path() == trained:
    zoo = ui.require_zoo()
    final = zoo.final_index()
    acc = zoo.metadata["test_acc"].to_numpy()[final]
    st.success(f"Trained **{zoo.name}**: {zoo.n_models} models, {zoo.n_checkpoints:,} checkpoints; final test "
               f"accuracy {acc.min():.3f} to {acc.max():.3f} (median {np.median(acc):.3f}). It is the current zoo: "
               "every page now shows it.")
    ui.chart(zplots.accuracy_curves(zoo.metadata, "lr", "test_acc"), key="train_curves")
    st.download_button("Download the zoo (native, .zip)", lambda: zoo_archive_bytes(zoo), f"{zoo.name}.zip",
                       "application/zip", key="train_download", on_click="ignore", icon=":material/download:")
    st.caption("The .zip unpacks to a native zoo folder that `wv.load_zoo` and the sidebar open.")
