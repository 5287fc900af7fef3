"""End to end in a real browser: ``streamlit run app.py`` on a free loopback port, driven through Playwright
with Debian's ``/usr/bin/chromium`` (never a downloaded browser).

Every page present in ``pages/`` is visited; on each, one real interaction is performed (the page's main
button, a widget, a box selection dragged on a chart), charts must render and no Streamlit exception box
may appear. A screenshot per page is saved to ``docs/screenshots/<page>.png`` (used by the README).
Run alone with ``pytest -m browser``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from wslviz.ui.home import page_files, page_title

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "docs" / "screenshots"
ARTIFACTS = ROOT / "tests" / "artifacts"  # failure screenshots (not committed)
VIEWPORT = {"width": 1366, "height": 850}  # a laptop screen
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'
EXCEPTION = '[data-testid="stException"]'
START_TIMEOUT = 120  # seconds for the server to answer its health check
RUN_TIMEOUT = 240_000  # ms for one script run (a first UMAP fit compiles numba for ~12 s on 2 cores)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """Base URL of a fresh ``streamlit run app.py``; the process is stopped by its id afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {k: v for k, v in os.environ.items() if k != "WSLVIZ_ZOO"}  # the default bundled zoo
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(30_000)  # locating an element; script runs wait longer in wait_idle
    try:
        yield pg
    finally:
        context.close()


# ------------------------------------------------------------------ helpers
def wait_idle(pg, settle: float = 0.5) -> None:
    """Wait until the script run triggered by the last action has finished (the status widget, shown
    while a script runs, has gone) and check that no exception box appeared."""
    pg.wait_for_selector('[data-testid="stApp"]')
    time.sleep(settle)
    pg.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                         timeout=RUN_TIMEOUT)
    time.sleep(0.3)
    assert_no_exception(pg)


def assert_no_exception(pg) -> None:
    boxes = pg.locator(EXCEPTION)
    if boxes.count():
        pytest.fail(f"Streamlit exception on {pg.url}:\n{boxes.first.inner_text()[:3000]}")


def wait_charts(pg, at_least: int = 1) -> int:
    """Wait until ``at_least`` Plotly charts have drawn their SVG; returns how many there are."""
    pg.wait_for_function(f"n => document.querySelectorAll('{CHART}').length >= n", arg=at_least,
                         timeout=RUN_TIMEOUT)
    return pg.locator(CHART).count()


def open_page(pg, base: str, url_path: str, query: str = "zoo=moons-mlp") -> None:
    pg.goto(f"{base}/{url_path}?{query}")
    wait_idle(pg, settle=1.0)


def click_button(pg, name: str) -> None:
    """Press a button; one that waits for the "run it anyway" box (a cost estimate above a minute, which depends on
    how busy the machine was when the page measured its unit costs) gets the box ticked first, as a user would."""
    button = pg.get_by_role("button", name=name, exact=True).first
    gate = pg.locator('[data-testid="stCheckbox"]').filter(has_text="run it anyway")
    if button.is_disabled() and gate.count():
        gate.first.locator("label").click()
        wait_idle(pg)
    button.click()
    wait_idle(pg)


def choose(pg, label: str, option: str) -> None:
    """Pick the first option containing ``option`` in the selectbox labelled ``label``."""
    box = pg.locator('[data-testid="stSelectbox"]').filter(has=pg.get_by_text(label, exact=True))
    field = box.locator("input").first
    field.click()
    field.fill(option)  # the list is filtered as one types, so long option lists need no scrolling
    pg.get_by_role("option").filter(has_text=option).first.click()
    wait_idle(pg)


def screenshot(pg, name: str) -> Path:
    """Save the whole page (the main area scrolls inside the app, so the viewport is grown to fit it)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = pg.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    pg.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(int(height), 8000))})
    time.sleep(1.0)  # charts re-layout to the new size
    out = SHOTS / f"{name}.png"
    pg.screenshot(path=str(out))
    pg.set_viewport_size(VIEWPORT)
    return out


def box_select(pg, chart_key: str, frame: tuple[float, float, float, float] = (0.4, 0.35, 0.65, 0.65)) -> None:
    """Drag a rectangle over a scatter chart whose drag mode is ``select``; ``frame`` is its corners
    (x0, y0, x1, y1) as fractions of the plot area (default: the middle)."""
    chart = pg.locator(f'.st-key-{chart_key} .js-plotly-plot .nsewdrag').first
    box = chart.bounding_box()
    assert box, f"chart {chart_key} has no drag layer"
    x0, y0 = box["x"] + box["width"] * frame[0], box["y"] + box["height"] * frame[1]
    x1, y1 = box["x"] + box["width"] * frame[2], box["y"] + box["height"] * frame[3]
    time.sleep(1.0)  # let plotly.js finish its layout before the drag
    pg.mouse.move(x0, y0)
    pg.mouse.down()
    for k in range(1, 21):
        pg.mouse.move(x0 + (x1 - x0) * k / 20, y0 + (y1 - y0) * k / 20)
        time.sleep(0.02)
    pg.mouse.up()
    wait_idle(pg)


# ------------------------------------------------------------------ the pages
def visit_home(pg, base: str) -> None:
    open_page(pg, base, "")
    wait_charts(pg)
    assert pg.get_by_text("step 1 of 5").count() == 1
    assert pg.locator('[data-testid="stMetric"]').count() == 3
    click_button(pg, "Next step")
    assert pg.get_by_text("step 2 of 5").count() == 1
    click_button(pg, "Previous step")
    screenshot(pg, "home")
    click_button(pg, "Go to Zoo with moons-mlp")  # moons-mlp opens first; the tour opens the page with teaching mode on
    pg.wait_for_url(re.compile(r"/Zoo\?"))
    wait_idle(pg)
    assert "zoo=moons-mlp" in pg.url
    assert pg.locator('[data-testid="stExpander"] details[open]').count() >= 1


def visit_zoo(pg, base: str) -> None:
    open_page(pg, base, "Zoo")
    wait_charts(pg, 3)
    choose(pg, "colour by", "weight_decay")
    pg.get_by_role("tab", name="Singular-value spectra").click()
    wait_charts(pg, 3)
    # pick a second checkpoint to inspect: it becomes the linked selection and goes into the URL
    picker = pg.locator('[data-testid="stMultiSelect"]').filter(has=pg.get_by_text("checkpoints to inspect"))
    picker.locator("input").click()
    pg.get_by_role("option").nth(1).click()
    pg.keyboard.press("Escape")
    wait_idle(pg)
    pg.wait_for_url(re.compile(r"sel=\d+(%2C|,)\d+"))
    sel = re.search(r"sel=([\d%C,]+)", pg.url).group(1)
    screenshot(pg, "zoo")
    # the selection survives a reload (read back from the URL) and a page switch (session state + URL)
    pg.reload()
    wait_idle(pg, settle=1.0)
    assert f"sel={sel}" in pg.url
    rows = re.split(r"%2C|,", sel)
    shown = picker.inner_text()
    assert all(f"#{r} ·" in shown for r in rows), shown
    pg.locator('[data-testid="stSidebarNav"] a').filter(has_text="Home").click()
    wait_idle(pg)
    pg.wait_for_url(re.compile(rf"sel={sel}"))
    assert pg.get_by_text("2 checkpoint(s)").count() == 1


def select_on_projections(pg, frame: tuple[float, float, float, float] = (0.4, 0.35, 0.65, 0.65)) -> int:
    """Drag a box on the Projections chart (it selects checkpoints for every page) and return how many
    checkpoints the sidebar says are selected. A drag that starts while plotly.js is still laying the chart
    out is lost, so it is retried."""
    for attempt in range(3):
        box_select(pg, "proj_chart", frame)
        try:
            pg.wait_for_url(re.compile(r"sel=\d+"), timeout=15_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    return selected_count(pg)


def selected_count(pg) -> int:
    """The number of selected checkpoints the sidebar states ("517 checkpoint(s): ...")."""
    caption = pg.get_by_text(re.compile(r"^[\d,]+ checkpoint\(s\)"))
    assert caption.count() == 1
    return int(re.match(r"[\d,]+", caption.inner_text()).group().replace(",", ""))


def visit_projections(pg, base: str) -> None:
    open_page(pg, base, "Projections")
    wait_charts(pg)  # PCA of weight statistics at first paint
    # fit another projection: PCA of per-layer spectral features (t-SNE/UMAP fits take minutes on a loaded
    # 2-core machine; the page handles them the same way)
    choose(pg, "features", "spectral")
    wait_charts(pg)
    select_on_projections(pg)
    # the section heading; while the page reruns, Streamlit may briefly show the old copy beside the new one
    assert pg.get_by_role("heading", name="Selected checkpoints").count() >= 1


def visit_symmetry(pg, base: str) -> None:
    open_page(pg, base, "Symmetry", query="zoo=digits-resnet")  # a module architecture: its derived groups
    wait_charts(pg)
    assert pg.get_by_text(re.compile(r"permutation groups, 10\^")).count() >= 1
    assert_no_exception(pg)
    open_page(pg, base, "Symmetry")
    before = wait_charts(pg)
    click_button(pg, "Apply another random symmetry")
    assert wait_charts(pg) >= before


def visit_landscape(pg, base: str) -> None:
    open_page(pg, base, "Landscape")
    click_button(pg, "Compute paths")
    wait_charts(pg)


def visit_predict(pg, base: str) -> None:
    open_page(pg, base, "Predict")
    click_button(pg, "Fit predictor")
    wait_charts(pg)


def visit_generate(pg, base: str) -> None:
    open_page(pg, base, "Generate")
    click_button(pg, "Generate")
    wait_charts(pg, 2)


def visit_merge(pg, base: str) -> None:
    open_page(pg, base, "Merge", query="zoo=digits-finetunes")  # fine-tunes of one base: what merging is for
    click_button(pg, "Merge")
    wait_charts(pg)


def visit_train(pg, base: str) -> None:
    open_page(pg, base, "Train_a_zoo")
    click_button(pg, "Train")
    wait_charts(pg)  # the live accuracy curves


def visit_lineage(pg, base: str) -> None:
    open_page(pg, base, "Lineage", query="zoo=digits-lineage")  # a known tree: right and wrong edges are drawn
    click_button(pg, "Recover the lineage")
    wait_charts(pg)
    assert pg.get_by_text("Families right").count() >= 1


def visit_reconstruct(pg, base: str) -> None:
    open_page(pg, base, "Reconstruct", query="zoo=digits-resnet")  # BatchNorm: statistics to invert
    click_button(pg, "Invert the checkpoint")
    wait_charts(pg)
    assert pg.get_by_text("Mean confidence").count() >= 1
    pg.get_by_text("Training examples: margin conditions").click()  # the other method: biases rule it out here
    wait_idle(pg)
    assert pg.get_by_text("The margin conditions do not apply").count() >= 1


VISITS: dict[str, Callable] = {"Home": visit_home, "Zoo": visit_zoo, "Projections": visit_projections,
                                "Symmetry": visit_symmetry, "Landscape": visit_landscape, "Predict": visit_predict,
                                "Generate": visit_generate, "Merge": visit_merge, "Train a zoo": visit_train,
                                "Lineage": visit_lineage, "Reconstruct": visit_reconstruct}
PAGES = ["Home"] + [page_title(p) for p in page_files()]


@pytest.mark.parametrize("name", PAGES)
def test_page_in_a_real_browser(server, page, name):
    if name not in VISITS:
        pytest.fail(f"page {name} has no browser interaction yet: add one to VISITS in {Path(__file__).name}")
    try:
        VISITS[name](page, server)
        assert_no_exception(page)
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"browser-{name.lower()}-failure.png"))
        raise
    if name not in ("Home", "Zoo"):  # those two save their screenshot mid-way, before navigating on
        screenshot(page, name.lower().replace(" ", "_"))


def test_every_page_after_a_box_selection_of_hundreds(server, page):
    """A box dragged over most of the Projections chart selects hundreds of checkpoints; every page then
    opens with that selection (widgets pre-filled from it must respect their own limits) without an
    exception or error box."""
    try:
        open_page(page, server, "Projections")
        wait_charts(page)
        selected = select_on_projections(page, frame=(0.03, 0.03, 0.97, 0.97))
        assert selected >= 200, f"the box selected {selected} checkpoints"
        for title in PAGES:
            page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
            wait_idle(page, settle=1.0)
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0, \
                f"{title}: {page.locator('[data-testid=stAlertContentError]').first.inner_text()[:500]}"
            assert selected_count(page) == selected, title
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-selection-failure.png"))
        raise


def test_lora_gl_tab_in_a_real_browser(server, page):
    """The Symmetry page's low-rank tab on the LoRA sample zoo: the GL(r) bars and the distance scatter draw,
    with adapters re-expressed in random coordinates too (screenshot ``docs/screenshots/symmetry_lora.png``)."""
    try:
        open_page(page, server, "Symmetry", query="zoo=digits-lora")
        page.get_by_role("tab", name="Low rank: any invertible G").click()
        wait_idle(page)
        wait_charts(page, 2)
        assert page.get_by_text("The factors move, the adapter does not").count() >= 1
        page.get_by_text("each adapter in random coordinates").click()
        wait_idle(page)
        wait_charts(page, 2)
        assert_no_exception(page)
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-lora-failure.png"))
        raise
    screenshot(page, "symmetry_lora")


def write_epoch_runs(folder: Path, runs: int = 4, epochs: tuple = ("init", 1, 2, 5, 10)) -> Path:
    """Four training runs of a tutorial-style MLP (``fc1``/``fc2`` keys) on scikit-learn's digits, each saved as
    ``seed{k}_epoch_{e}.pt`` (the start named ``init``, unpadded epoch numbers), and the digits as ``digits.npz``
    beside the folder: what a practitioner's folder of checkpoints and data look like."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = torch.tensor(digits.data / 16.0, dtype=torch.float32), torch.tensor(digits.target)
    folder.mkdir()
    np.savez(folder.parent / "digits.npz", x=x.numpy(), y=y.numpy())
    for k in range(runs):
        torch.manual_seed(k)
        net = torch.nn.Sequential()
        net.add_module("fc1", torch.nn.Linear(64, 16))
        net.add_module("act", torch.nn.ReLU())
        net.add_module("fc2", torch.nn.Linear(16, 10))
        opt = torch.optim.SGD(net.parameters(), lr=0.05 * (k + 1))
        for epoch in range(max(e for e in epochs if e != "init") + 1):
            if epoch in epochs or (epoch == 0 and "init" in epochs):
                torch.save(net.state_dict(), folder / f"seed{k}_epoch_{'init' if epoch == 0 else epoch}.pt")
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[:1200]), y[:1200]).backward()
            opt.step()
    return folder.parent / "digits.npz"


def test_epoch_folder_with_a_stated_task_in_a_real_browser(server, page, tmp_path):
    """A folder of four runs saved every few epochs opens as four models with a numeric epoch axis; the task
    stated in the home page's form gives every checkpoint its accuracy, which the Zoo page plots, Predict
    predicts and the Landscape pickers show beside the file names."""
    from urllib.parse import quote

    folder = tmp_path / "runs"
    data = write_epoch_runs(folder)
    try:
        page.goto(f"{server}/?zoo={quote(str(folder))}")
        wait_idle(page, settle=1.0)
        assert page.get_by_text("4 models").count() >= 1, page.locator('[data-testid="stMain"]').inner_text()[:2000]
        page.get_by_label("Task: a .npz file with arrays x and y (to evaluate)").fill(str(data))
        click_button(page, "Reopen with these")
        assert page.get_by_text("Task:").count() >= 1
        page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Zoo").first.click()
        wait_idle(page)
        wait_charts(page)
        assert "test_acc" in page.locator('[data-testid="stMain"]').inner_text()
        page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Predict").first.click()
        wait_idle(page)
        assert page.get_by_text("Nothing to predict").count() == 0
        click_button(page, "Fit predictor")  # the default target is the accuracy the task gave
        wait_charts(page)
        assert page.get_by_text("Kendall τ").count() >= 1
        assert page.locator(".gtitle").filter(has_text="Out-of-fold predictions of test_acc").count() == 1
        page.locator('[data-testid="stSidebarNav"] a').filter(has_text="Landscape").first.click()
        wait_idle(page)
        picker = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Model A", exact=True))
        picker.locator("input").first.click()
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        # each checkpoint by its file and its accuracy on the stated task
        labelled = [o for o in options if re.search(r"seed\d_epoch_(init|\d+)\.pt.* 0\.\d{3}$", o)]
        assert len(options) == 20 and labelled == options, options
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser-epochs-failure.png"))
        raise
