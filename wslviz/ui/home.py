"""The home page (summary card of the current zoo and a five-step guided tour) and the page list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from wslviz import ui
from wslviz.plots import zoo as zplots

ROOT = Path(__file__).resolve().parents[2]
PAGES_DIR = ROOT / "pages"
ICONS = {"Zoo": ":material/pets:", "Projections": ":material/scatter_plot:", "Symmetry": ":material/flip:",
         "Landscape": ":material/landscape:", "Predict": ":material/query_stats:",
         "Generate": ":material/auto_awesome:"}
TOUR_KEY = "tour_step"
_GOTO_KEY = "_tour_goto"


def page_files() -> list[Path]:
    """The page scripts under ``pages/``, in file-name order (``1_Zoo.py``, ``2_Projections.py``, ...)."""
    return sorted(PAGES_DIR.glob("[0-9]*_*.py")) if PAGES_DIR.is_dir() else []


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
        st.button(f"Open {step.zoo} on {step.page}", key="tour_go", type="primary", on_click=_go, args=(step,),
                  disabled=bool(missing), icon=":material/play_arrow:",
                  help=f"Not available yet: {', '.join(missing)} missing." if missing else None)
        c1, c2 = st.columns(2)
        c1.button("Previous step", key="tour_prev", on_click=_move, args=(-1,), disabled=i == 0,
                  icon=":material/arrow_back:", width="stretch")
        c2.button("Next step", key="tour_next", on_click=_move, args=(1,), disabled=i == len(TOUR) - 1,
                  icon=":material/arrow_forward:", width="stretch")


def summary_card(zoo) -> None:
    """Models, checkpoints, parameters, architecture, task and final accuracy range of ``zoo``."""
    s = zoo.summary()
    with st.container(border=True):
        st.markdown(f"### {zoo.name}")
        if zoo.description:
            st.caption(zoo.description)
        c = st.columns(3)
        c[0].metric("models", f"{s['models']:,}")
        c[1].metric("checkpoints", f"{s['checkpoints']:,}")
        c[2].metric("parameters", f"{s['parameters']:,}", help="per model (length of the flat weight vector)")
        lines = [f"**Architecture:** {s['architecture']}", f"**Task:** {s['task']}", f"**Format:** {zoo.format}"]
        if "final test accuracy" in s:
            lines.append(f"**Final test accuracy:** {s['final test accuracy']}")
        hparams = ", ".join(zplots.hyperparameter_columns(zoo.metadata)) or "none recorded"
        lines.append(f"**Hyper-parameters varied:** {hparams}")
        st.markdown("  \n".join(lines))
        if "test_acc" in zoo.metadata:
            fig = zplots.final_accuracy_histogram(zoo.metadata["test_acc"].iloc[zoo.final_index()].to_numpy())
            st.plotly_chart(fig, key="home_accuracy")


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
