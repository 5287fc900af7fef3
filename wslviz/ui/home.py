"""The home page (summary card of the current zoo, what was assumed and how to state it, and a five-step
guided tour) and the page list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from wslviz import ui
from wslviz.core.builtins import BUILTINS
from wslviz.core.layout import ACTIVATIONS
from wslviz.core.protocol import assumed_of, has_forward
from wslviz.plots import zoo as zplots
from wslviz.ui import serve

ROOT = Path(__file__).resolve().parents[2]
PAGES_DIR = ROOT / "pages"
ICONS = {"Zoo": ":material/pets:", "Projections": ":material/scatter_plot:", "Symmetry": ":material/flip:",
         "Landscape": ":material/landscape:", "Predict": ":material/query_stats:",
         "Generate": ":material/auto_awesome:", "Merge": ":material/merge:",
         "Train a zoo": ":material/model_training:", "Lineage": ":material/account_tree:",
         "Reconstruct": ":material/image_search:"}
TOUR_KEY = "tour_step"
_GOTO_KEY = "_tour_goto"


def page_files() -> list[Path]:
    """The page scripts under ``pages/``, in the order of their numbers (``1_Zoo.py``, ..., ``9_Lineage.py``,
    ``10_Reconstruct.py``)."""
    if not PAGES_DIR.is_dir():
        return []
    return sorted(PAGES_DIR.glob("[0-9]*_*.py"), key=lambda p: (int(p.name.split("_", 1)[0]), p.name))


def page_title(path: Path) -> str:
    """``2_Projections.py`` -> ``"Projections"``."""
    return path.stem.split("_", 1)[1].replace("_", " ")


def find_page(title: str) -> str | None:
    """The page file (relative to the app root) whose title is ``title``, if that page exists."""
    for p in page_files():
        if page_title(p) == title:
            return f"pages/{p.name}"
    return None


def app_pages() -> list:
    """``st.Page`` objects: Home, then every page present in ``pages/`` (a missing page is simply absent)."""
    home_page = st.Page(home, title="Home", icon=":material/home:", default=True)
    return [home_page] + [st.Page(f"pages/{p.name}", title=page_title(p), icon=ICONS.get(page_title(p)))
                          for p in page_files()]


@dataclass(frozen=True)
class Step:
    title: str
    zoo: str
    page: str
    body: str


TOUR = (
    Step("Meet a zoo", "moons-mlp", "Zoo",
         "Two-moons MLPs trained with different seeds, learning rates, weight decays and batch sizes, saved "
         "at several epochs. On the **Zoo** page, colour the training curves by learning rate: which settings "
         "learn fastest, which end best? Pick checkpoints to inspect: they become the selection every other "
         "page starts from."),
    Step("Same function, different weights", "spirals-tanh", "Symmetry",
         "Permuting hidden units, or flipping the signs of a tanh unit's in- and outgoing weights, changes "
         "the weight vector but not the function. On **Symmetry**, apply a random symmetry: the weights move "
         "far, the outputs stay identical to float precision. Then align two models."),
    Step("Paths between models", "moons-mlp", "Landscape",
         "Walk the straight line between two independently trained models: the loss rises in the middle (a "
         "barrier). On **Landscape**, compare the naive path with the path after aligning the second model to "
         "the first: most of the barrier was permutation symmetry."),
    Step("Weights as data", "digits-cnn", "Projections",
         "Hundreds of small CNNs on scikit-learn's digits. On **Projections**, embed them (PCA/UMAP of weight "
         "statistics) and colour by accuracy: good and bad models separate; drag a box to select some. On "
         "**Predict**, see how well simple weight statistics predict test accuracy without running the models."),
    Step("New weights", "moons-mlp", "Generate",
         "Can we synthesise working weights? On **Generate**, merge aligned models, sample from a Gaussian "
         "fitted to the zoo or train a small hyper-representation, evaluate the new models at once and check "
         "their novelty: good *and* not a copy of a zoo member."),
)


def _go(step: Step) -> None:
    """Tour button: open the step's zoo, switch teaching mode on, and ask for the page switch (done in
    the script body: ``st.switch_page`` may not be called from a callback)."""
    path = ui.bundled_zoos().get(step.zoo)
    if path is not None:
        ui.set_zoo(path)
    st.session_state[ui.TEACHING_KEY] = True
    st.session_state[_GOTO_KEY] = find_page(step.page)


def _move(delta: int) -> None:
    st.session_state[TOUR_KEY] = min(len(TOUR) - 1, max(0, st.session_state.get(TOUR_KEY, 0) + delta))


def tour() -> None:
    """The five-step guided tour through the bundled zoos."""
    if goto := st.session_state.pop(_GOTO_KEY, None):
        st.switch_page(goto, query_params=ui.url_params())
    i = st.session_state.get(TOUR_KEY, 0)
    step = TOUR[i]
    with st.container(border=True):
        st.markdown(f"#### Guided tour · step {i + 1} of {len(TOUR)}: {step.title}")
        st.progress((i + 1) / len(TOUR))
        st.markdown(step.body)
        page, zoo_path = find_page(step.page), ui.bundled_zoos().get(step.zoo)
        missing = [what for what, ok in ((f"page {step.page}", page), (f"zoo {step.zoo}", zoo_path)) if not ok]
        current = ui.current_zoo_path()
        here = current is not None and zoo_path is not None and Path(current) == Path(zoo_path)
        if current is not None and not here:
            st.caption(f"This step uses {step.zoo}; you have {ui.zoo_ref(current)} open (it stays a click away "
                       "in the sidebar).")
        label = f"Go to {step.page} with {step.zoo}" if here else f"Open {step.zoo} on {step.page}"
        st.button(label, key="tour_go", type="primary", on_click=_go, args=(step,),
                  disabled=bool(missing), icon=":material/play_arrow:",
                  help=f"Not available yet: {', '.join(missing)} missing." if missing else None)
        c1, c2 = st.columns(2)
        c1.button("Previous step", key="tour_prev", on_click=_move, args=(-1,), disabled=i == 0,
                  icon=":material/arrow_back:", width="stretch")
        c2.button("Next step", key="tour_next", on_click=_move, args=(1,), disabled=i == len(TOUR) - 1,
                  icon=":material/arrow_forward:", width="stretch")


def summary_card(zoo) -> None:
    """Models, checkpoints, parameters, architecture (and what of it is assumed), task and final accuracy range
    of ``zoo``; for folders of checkpoints also the groups of architectures, the files not opened and notes."""
    s = zoo.summary()
    with st.container(border=True):
        st.markdown(f"### {zoo.name}")
        if zoo.description:
            st.caption(zoo.description)
        c = st.columns(3)
        c[0].metric("models", f"{s['models']:,}")
        c[1].metric("checkpoints", f"{s['checkpoints']:,}")
        c[2].metric("parameters", f"{s['parameters']:,}", help="per model (length of the flat weight vector)")
        lines = [f"**Architecture:** {s['architecture']} ({zoo.arch.kind})", f"**Task:** {s['task']}",
                 f"**Format:** {zoo.format}"]
        if "final test accuracy" in s:
            lines.append(f"**Final test accuracy:** {s['final test accuracy']}")
        columns = zplots.hyperparameter_columns(zoo.metadata)
        lines.append(f"**Hyper-parameters varied:** {', '.join(columns) or 'none recorded'}")
        st.markdown("  \n".join(lines))
        architecture_notes(zoo)
        if "test_acc" in zoo.metadata:
            fig = zplots.final_accuracy_histogram(zoo.metadata["test_acc"].iloc[zoo.final_index()].to_numpy())
            ui.chart(fig, key="home_accuracy")  # the house theme, as on every page


def architecture_notes(zoo) -> None:
    """What the checkpoints did not record (shown as assumed), why a zoo is weights-only, the groups of a
    folder with several architectures, the files not opened (with the reason) and conversions."""
    arch, extra, assumed = zoo.arch, zoo.extra, assumed_of(zoo.arch)
    if not has_forward(arch):
        st.info(f"**Weights only:** {getattr(arch, 'reason', '') or 'the network cannot be rebuilt'}. Weight views "
                "work (Zoo, Projections, Predict, weight samplers); evaluation, landscapes and symmetries need "
                "the architecture stated below.", icon=":material/info:")
    if assumed:
        st.markdown("**Assumed** (the checkpoints do not record it; state it below):\n"
                    + "\n".join(f"- {what}: {phrase} *(assumed)*" for what, phrase in assumed.items()))
    if extra.get("notes"):
        st.caption("Read: " + "; ".join(f"{note} ({n:,} file{'s' if n > 1 else ''})"
                                        for note, n in extra["notes"].items()))
    if extra.get("skipped"):
        with st.expander(f"{len(extra['skipped']):,} file(s) not opened", icon=":material/warning:"):
            st.dataframe(pd.DataFrame({"file": list(extra["skipped"]), "reason": list(extra["skipped"].values())}),
                         hide_index=True, key="home_skipped")
    groups = extra.get("groups") or []
    if len(groups) > 1:
        st.markdown(f"**{len(groups)} architectures in this folder** (group {extra.get('group', 0)} is open):")
        table = pd.DataFrame(groups)
        st.dataframe(table, hide_index=True, key="home_groups", column_config=ui.number_columns(table))
        pick = st.selectbox("Open group", [g["group"] for g in groups], index=int(extra.get("group", 0)),
                            format_func=lambda i: f"group {i}: {groups[i]['files']:,} files, {groups[i]['example']}",
                            key="home_group")
        if pick != extra.get("group", 0) and st.button("Open this group", key="home_group_go"):
            _apply(ui.current_zoo_path(), {**ui.zoo_options(ui.current_zoo_path()), "group": int(pick)})


def _apply(path: str, options: dict) -> None:
    """Reopen the current zoo with ``options`` (kept for it), or show why it does not open with them."""
    try:
        ui.set_zoo_options(path, {k: v for k, v in options.items() if v not in (None, "", [])})
    except (ValueError, OSError) as e:
        st.session_state[STATE_ERROR_KEY] = serve.public_message(str(e), also=(ui.SAMPLE_DIR,))
        return
    st.session_state.pop(STATE_ERROR_KEY, None)
    st.rerun()


STATE_ERROR_KEY = "_home_state_error"
CHECKPOINT_FORMATS = ("folder", "huggingface", "pdiff")


def state_form(zoo, path: str) -> None:
    """A small form to state what the checkpoints do not record (activation, input shape, one stack, the whole
    architecture as a JSON spec) and to attach a task (a .npz with x and y); reopens the zoo with them."""
    arch = zoo.arch
    about_arch = zoo.format in CHECKPOINT_FORMATS and (bool(assumed_of(arch)) or not has_forward(arch))
    about_base = zoo.format == "peft"  # adapters run once their base model is known
    if not about_arch and not about_base and zoo.task is not None:
        return
    current = ui.zoo_options(path)
    with st.form("home_state", border=True):
        st.markdown("#### State what the checkpoints do not record")
        options: dict = {}
        if about_arch:
            c1, c2 = st.columns(2)
            acts = ["(assumed)", *ACTIVATIONS]
            act = c1.selectbox("Activation between layers", acts, key="home_activation",
                               index=acts.index(current["activation"]) if current.get("activation") in acts else 0)
            options["activation"] = None if act == "(assumed)" else act
            options["input_shape"] = c2.text_input("Input shape (C,H,W for images)", key="home_input_shape",
                                                   value=",".join(map(str, current.get("input_shape") or [])),
                                                   placeholder="e.g. 1,28,28")
            stacks = {i: name for i, name in enumerate(getattr(arch, "stacks", []) or [])}
            if current.get("stack") is not None and not stacks:  # a stack is open: keep it selectable
                stacks = {current["stack"]: f"stack {current['stack']} (open now)"}
            if stacks:
                choices = [None, *stacks]
                options["stack"] = st.selectbox(
                    "Open one stack as a network", choices, key="home_stack",
                    index=choices.index(current.get("stack")) if current.get("stack") in choices else 0,
                    format_func=lambda i: "(all tensors, weights only)" if i is None else stacks[i])
            b1, b2 = st.columns([1, 2])
            stated = current.get("arch") if isinstance(current.get("arch"), dict) else {}
            names = ["(none)", *BUILTINS]
            options["builtin"] = b1.selectbox(
                "Or a built-in architecture", names, key="home_builtin",
                index=names.index(stated["builtin"]) if stated.get("builtin") in names else 0,
                help="The network these checkpoints were saved from, if it is one of wslviz's built-ins (ResNets, "
                     "VGG, MobileNet-V2, LeNet-5, recurrent classifiers, a GPT, SB3 actor-critics, 1-D conv nets).")
            options["builtin_kwargs"] = b2.text_input(
                "its keyword arguments (JSON)", key="home_builtin_kwargs",
                value=json.dumps(stated.get("kwargs") or {}) if stated.get("builtin") else "",
                placeholder='e.g. {"depth": 18, "n_classes": 10, "in_channels": 1}')
            options["arch"] = st.text_area("Or the whole architecture (JSON spec)", key="home_arch",
                                           value=json.dumps(current["arch"]) if isinstance(current.get("arch"), dict)
                                           and not current["arch"].get("builtin") else str(current.get("arch") or ""),
                                           placeholder='{"input_shape": [4], "layers": [{"type": "linear", ...}]}')
        if about_base:
            options["base"] = st.text_input("Base model folder (Hugging Face layout: config.json + model.safetensors) "
                                            "that these adapters adapt, to run them", key="home_base",
                                            value=str(current.get("base") or ""), placeholder="/path/to/base-model")
        options["task"] = st.text_input("Task: a .npz file with arrays x and y (to evaluate)", key="home_task",
                                        value=str(current.get("task") or ""), placeholder="/path/to/data.npz")
        submitted = st.form_submit_button("Reopen with these", type="primary", key="home_state_go")
    if error := st.session_state.get(STATE_ERROR_KEY):
        st.error(error, icon=":material/error:")
    if submitted:
        try:
            options = _parse(options)
        except ValueError as e:
            st.session_state[STATE_ERROR_KEY] = str(e)
            st.rerun()
        _apply(path, {**{k: v for k, v in current.items() if k == "group"}, **options})


def _parse(options: dict) -> dict:
    """The form's text fields as reader options (``"1,28,28"`` -> ``[1, 28, 28]``, JSON text -> a spec)."""
    out = dict(options)
    shape = str(out.get("input_shape") or "").replace("x", ",")
    try:
        out["input_shape"] = [int(v) for v in shape.split(",") if v.strip()] or None
    except ValueError:
        raise ValueError(f"input shape {shape!r}: expected sizes like 1,28,28") from None
    text = str(out.get("arch") or "").strip()
    try:
        out["arch"] = json.loads(text) if text else None
    except json.JSONDecodeError as e:
        raise ValueError(f"the architecture is not valid JSON ({e})") from None
    builtin, kwargs = out.pop("builtin", None), str(out.pop("builtin_kwargs", "") or "").strip()
    if builtin and builtin != "(none)":
        if out["arch"] is not None:
            raise ValueError("state one architecture: a built-in or a JSON spec, not both")
        try:
            kw = json.loads(kwargs) if kwargs else {}
        except json.JSONDecodeError as e:
            raise ValueError(f"the built-in's keyword arguments are not valid JSON ({e})") from None
        if not isinstance(kw, dict):
            raise ValueError('the built-in\'s keyword arguments are a JSON object, e.g. {"depth": 18}')
        out["arch"] = {"kind": "module", "builtin": builtin, "kwargs": kw,
                       **({"input_shape": out["input_shape"]} if out.get("input_shape") else {})}
    return out


def home() -> None:
    """The home page."""
    st.title("wslviz: weight space learning")
    st.markdown("Neural network **weights as data**: open a model zoo (a population of trained checkpoints), "
                "see how it is laid out in weight space, which differences are mere symmetries, what lies on "
                "the paths between models, what the weights reveal about accuracy, and what new weights a "
                "generator makes. Pick a zoo in the sidebar, or follow the tour.")
    left, right = st.columns([1, 1], gap="large")
    with right:
        tour()
    with left:
        zoo = ui.current_zoo()
        if zoo is None:
            st.info("No zoo is open: pick one in the sidebar (a bundled zoo, a folder path or an upload).")
        else:
            summary_card(zoo)
            state_form(zoo, ui.current_zoo_path())
