"""Responsiveness of the app in a real browser, against every row of the budget of issue 17.

``streamlit run app.py`` on a loopback port (a fresh per-user cache folder, ``$WSLVIZ_CACHE``, so nothing
is computed beforehand), driven by Debian's chromium (``/usr/bin/chromium``) through Playwright at
1366 x 850 on the bundled ``moons-mlp`` zoo. Every time is from the click (or the page load) until the
script run it triggered has finished and the chart it should draw is drawn.

1. **Uncached computations** (the issue's slow list, in the order a user meets them), each measured once on
   a fresh server: the first chart in a new browser session (server just started, then a second session),
   the first UMAP, t-SNE, naive vs aligned side by side, fit predictor, the leaderboard, the
   hyper-representation generator, and training 64 moons MLPs on the Train-a-zoo page (the issue asks for
   under a minute). Budget: under 5 s, or else a progress bar, not blocking, and the result kept on disk.
   Recorded for each: the seconds; whether and after how long a progress bar (``st.progress``) appeared;
   *not blocking*: a second browser tab opened ``--probe-after`` s into the computation draws the Zoo
   page's first chart, in how many seconds; *kept on disk*: after a server restart (same cache folder)
   the same click in a new session draws the result within ``--disk-wait`` s (else it was recomputed:
   the server is restarted again so the abandoned run does not slow what follows).
2. **Warm caches**, in one new session on the warm server: every page's first chart when navigated to
   through the sidebar (budget 2 s; pages that draw on a button are revisited after pressing it once, which
   is what a session that has used them sees), and one cached interaction per page (budget 1 s), each the
   median of ``--repeats`` after one unmeasured repetition.

Every step is bounded (``--step-timeout``); a step past its bound is reported as such. Prints a table and
writes ``benchmarks/results/bench_responsiveness.json`` (after each part, so a run cut short keeps what it
measured: ``parts_done``); ``--table`` prints the README tables from it.
Usage: ``.venv/bin/python benchmarks/bench_responsiveness.py``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_responsiveness.json"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 850}
ZOO = "moons-mlp"
FIRST_CHART_BUDGET, INTERACTION_BUDGET, UNCACHED_BUDGET = 2.0, 1.0, 5.0
TRAIN_BUDGET = 60.0  # issue 17: 64 moons MLPs trained "in under a minute"
FRESH = '[data-testid="stElementContainer"]:not([data-stale="true"])'
CHART = f'{FRESH} [data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'
PROGRESS = '[data-testid="stProgress"]'
EXCEPTIONS = '[data-testid="stException"]'
STATE = """([sel, progress]) => ({chart: !sel || document.querySelector(sel) !== null,
                                 progress: document.querySelector(progress) !== null})"""
sys.path.insert(0, str(ROOT))

from streamlit_runs import CHROMIUM, RunCounter, table_only  # noqa: E402

from wslviz.ui.home import page_files, page_title  # noqa: E402


def chart_in(key: str) -> str:
    """The selector of a drawn Plotly chart with Streamlit key ``key``."""
    return f'{FRESH}.st-key-{key} .js-plotly-plot .main-svg, .st-key-{key} {FRESH} .js-plotly-plot .main-svg'


# ---------------------------------------------------------------------------------------------- server
class Server:
    """``streamlit run app.py`` on a free loopback port with its own per-user cache folder; restartable
    with the same folder (what reopening the app finds on disk)."""

    def __init__(self, work: Path):
        self.work, self.proc, self.base = work, None, ""

    def start(self) -> float:
        """Start it and wait for its health check; returns the seconds that took."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "WSLVIZ_ZOO"}
        env.update(WSLVIZ_CACHE=str(self.work / "user-cache"), TMPDIR=str(self.work))
        started = time.perf_counter()
        with open(self.work / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                 "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
                 "--server.fileWatcherType", "none", "--server.runOnSave", "false"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        while time.perf_counter() - started < 180 and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.25)
        raise RuntimeError(f"streamlit did not start:\n{(self.work / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the process group we started, by its id."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)


# ---------------------------------------------------------------------------------------------- driving
class Session:
    """One browser tab (a Playwright context: one Streamlit session)."""

    def __init__(self, browser, server: Server, timeout_s: float):
        self.browser, self.server, self.timeout_s = browser, server, timeout_s
        self.context = self.page = self.runs = None

    async def __aenter__(self) -> Session:
        self.context = await self.browser.new_context(viewport=VIEWPORT)
        self.page = await self.context.new_page()
        self.runs = RunCounter(self.page)
        self.page.set_default_timeout(60_000)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.context.close()

    async def timed(self, action: Callable[[], Awaitable[Any]], chart: str | None = CHART,
                    probe: Callable[[], Awaitable[float | None]] | None = None, probe_after: float = 3.0,
                    timeout_s: float | None = None) -> dict[str, Any]:
        """Run ``action`` and wait until the script run it triggers has finished and ``chart`` (a selector;
        None: nothing to wait for) is drawn. Returns ``seconds`` (None past the bound), ``progress_after_s``
        (when a progress bar first showed, or None), ``probe_s`` (what ``probe`` returned, started
        ``probe_after`` s in, if the run was still going) and ``exception`` (an exception box's text)."""
        timeout_s = timeout_s or self.timeout_s
        before = self.runs.finished
        start = time.perf_counter()
        await action()
        out: dict[str, Any] = {"seconds": None, "progress_after_s": None, "probe_s": None}
        probing = None
        while (elapsed := time.perf_counter() - start) < timeout_s:
            state = await self.page.evaluate(STATE, [chart, PROGRESS])
            if state["progress"] and out["progress_after_s"] is None:
                out["progress_after_s"] = round(elapsed, 2)
            if self.runs.finished > before and state["chart"]:
                out["seconds"] = round(elapsed, 3)
                break
            if probe is not None and probing is None and elapsed >= probe_after:
                probing = asyncio.create_task(probe())
            await asyncio.sleep(0.1)
        if probing is not None:
            out["probe_s"] = await probing
        boxes = self.page.locator(EXCEPTIONS)
        out["exception"] = (await boxes.first.inner_text())[:500] if await boxes.count() else None
        return out

    async def shows(self, selector: str, within_s: float) -> bool:
        """Whether ``selector`` matches within ``within_s`` seconds."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            await self.page.wait_for_selector(selector, timeout=within_s * 1000)
            return True
        except PlaywrightTimeout:
            return False

    def goto(self, path: str = "") -> Callable[[], Awaitable[Any]]:
        return lambda: self.page.goto(f"{self.server.base}/{path}?zoo={ZOO}")

    def nav(self, title: str) -> Callable[[], Awaitable[Any]]:
        return self.page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click

    def widget(self, key: str):
        """The element of the widget with Streamlit key ``key`` (keys outlive label rewordings)."""
        return self.page.locator(f".st-key-{key}").first

    def button(self, key: str) -> Callable[[], Awaitable[Any]]:
        return lambda: self.widget(key).locator("button").first.click()

    def toggle(self, key: str) -> Callable[[], Awaitable[Any]]:
        return lambda: self.widget(key).locator("label").first.click()

    def choose(self, key: str, option: str) -> Callable[[], Awaitable[Any]]:
        """Pick the first option containing ``option`` in the selectbox ``key``."""
        async def act() -> None:
            field = self.widget(key).locator("input").first
            await field.click()
            await field.fill(option)
            await self.page.get_by_role("option").filter(has_text=option).first.click()
        return act

    def step_option(self, key: str, arrow: str) -> Callable[[], Awaitable[Any]]:
        """Move the selectbox ``key`` one option down (``arrow="ArrowDown"``) or up."""
        async def act() -> None:
            await self.widget(key).locator("input").first.click()
            await self.page.keyboard.press(arrow)
            await self.page.keyboard.press("Enter")
        return act


# ---------------------------------------------------------------------------------------------- the rows
# the uncached computations: (row, page, steps to set it up, unmeasured; the measured action; the chart it
# draws). Steps and actions are (method of Session, arguments).
UNCACHED: list[tuple[str, str, list[tuple[str, tuple]], tuple[str, tuple], str]] = [
    ("first UMAP", "Projections", [], ("choose", ("proj_method", "UMAP")), "proj_chart"),
    ("t-SNE", "Projections", [], ("choose", ("proj_method", "t-SNE")), "proj_chart"),
    ("naive vs aligned (aligned features)", "Projections",
     [("choose", ("proj_method", "PCA")), ("toggle", ("proj_compare",))], ("button", ("proj_compute",)),
     "proj_chart_aligned"),
    ("fit predictor", "Predict", [], ("button", ("predict_fit_go",)), "predict_scatter"),
    ("leaderboard", "Predict", [], ("button", ("predict_board_go",)), "predict_board_fig"),
    ("hyper-representation generator", "Generate", [("choose", ("gen_method", "Hyper-representation"))],
     ("button", ("gen_go",)), "gen_violins"),
]
# page -> the cached interaction measured there: (description, action there, action back, chart expected)
INTERACTIONS: dict[str, tuple[str, tuple[str, tuple], tuple[str, tuple], bool]] = {
    "Home": ("tour: next / previous step", ("button", ("tour_next",)), ("button", ("tour_prev",)), False),
    "Zoo": ("change 'colour by'", ("step_option", ("zoo_color_by", "ArrowDown")),
            ("step_option", ("zoo_color_by", "ArrowUp")), True),
    "Projections": ("change 'colour by'", ("step_option", ("proj_color", "ArrowDown")),
                    ("step_option", ("proj_color", "ArrowUp")), True),
    "Symmetry": ("apply a random symmetry", ("button", ("sym_apply",)), ("button", ("sym_apply",)), True),
    "Landscape": ("compute paths (cached)", ("button", ("land_path_go",)), ("button", ("land_path_go",)), True),
    "Predict": ("fit predictor (cached)", ("button", ("predict_fit_go",)), ("button", ("predict_fit_go",)), True),
    "Generate": ("generate (cached fit)", ("button", ("gen_go",)), ("button", ("gen_go",)), True),
    "Merge": ("merge (cached)", ("button", ("merge_go",)), ("button", ("merge_go",)), True),
    "Train a zoo": ("change the task", ("choose", ("train_task", "circles")), ("choose", ("train_task", "moons")),
                    False),
}


def _act(session: Session, spec: tuple[str, tuple]) -> Callable[[], Awaitable[Any]]:
    return getattr(session, spec[0])(*spec[1])


async def probe_zoo(browser, server: Server) -> float | None:
    """Seconds for a second tab to draw the Zoo page's first chart (None: not within 60 s)."""
    async with Session(browser, server, 60) as other:
        return (await other.timed(other.goto("Zoo")))["seconds"]


def _median(seconds) -> float | None:
    """The median of measured seconds, a step past its bound (None) counting as infinitely long; None when
    that median is past the bound."""
    m = statistics.median(float("inf") if v is None else v for v in seconds)
    return None if m == float("inf") else round(m, 3)


async def guarded(steps: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """``steps()``, or what went wrong when a widget could not be found or the page failed (the run goes on)."""
    from playwright.async_api import Error as PlaywrightError

    try:
        return await steps()
    except PlaywrightError as e:
        return {"seconds": None, "progress_after_s": None, "probe_s": None, "exception": None,
                "failed": str(e).splitlines()[0][:300]}


async def measure_uncached(s: Session, row: tuple, probe: Callable[[], Awaitable[float | None]] | None,
                           timeout_s: float | None = None) -> dict[str, Any]:
    """One row of ``UNCACHED`` in session ``s``, already on its page: its set-up steps, then the measured click."""
    _, _, setup, action, key = row
    for spec in setup:  # a set-up step that changes nothing (the option is already chosen) runs no script
        await s.timed(_act(s, spec), chart=None, timeout_s=min(s.timeout_s, 20.0))
    return await s.timed(_act(s, action), chart=chart_in(key), probe=probe, timeout_s=timeout_s)


async def uncached(browser, server: Server, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 1: each computation of the slow list, once, on a server that has computed nothing yet."""
    rows: list[dict[str, Any]] = []
    probe = lambda: probe_zoo(browser, server)  # noqa: E731
    async with Session(browser, server, args.step_timeout) as s:
        r = await guarded(lambda: s.timed(s.goto()))
        rows.append({"row": "first chart in a new browser session (server just started)", "page": "Home", **r})

        async def second() -> dict[str, Any]:
            async with Session(browser, server, args.step_timeout) as s2:
                return await s2.timed(s2.goto())
        rows.append({"row": "first chart in a new browser session (second session)", "page": "Home",
                     **await guarded(second)})
        page_now = "Home"
        for row in UNCACHED:
            name, page = row[:2]

            async def steps(row=row, page=page, now=page_now) -> dict[str, Any]:
                if page != now:
                    await s.timed(s.nav(page), chart=None)
                return await measure_uncached(s, row, probe)
            rows.append({"row": name, "page": page, **await guarded(steps)})
            page_now = page
            print(json.dumps(rows[-1]), flush=True)

    async def train() -> dict[str, Any]:
        async with Session(browser, server, args.step_timeout) as t:  # a session of its own: it changes the zoo
            await t.timed(t.goto("Train_a_zoo"), chart=None)
            return await t.timed(t.button("train_go"), chart=chart_in("train_curves"), probe=probe)
    rows.append({"row": "train a zoo (64 moons MLPs, the page's defaults)", "page": "Train a zoo",
                 **await guarded(train)})
    print(json.dumps(rows[-1]), flush=True)
    return rows


async def kept_on_disk(browser, server: Server, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Part 3: after a restart, is each uncached result drawn within ``--disk-wait`` s (kept on disk)?"""
    server.stop()
    server.start()

    async def first() -> dict[str, Any]:
        async with Session(browser, server, args.step_timeout) as s:
            return await s.timed(s.goto())
    rows.append({"row": "first chart in a new browser session (server restarted)", "page": "Home",
                 **await guarded(first)})
    by_name = {row["row"]: row for row in rows}
    for row in UNCACHED:
        async def again(row=row) -> dict[str, Any]:
            async with Session(browser, server, args.step_timeout) as s:
                await s.timed(s.goto(row[1]), chart=None)
                return await measure_uncached(s, row, None, timeout_s=args.disk_wait)
        r = await guarded(again)
        by_name[row[0]]["after_restart_s"] = r["seconds"]
        print(f"after a restart: {row[0]}: {r}", flush=True)
        if r["seconds"] is None:  # it is being recomputed: restart so the abandoned run does not slow the next
            server.stop()
            server.start()


async def warm(browser, server: Server, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 2: first chart per page through the sidebar and one cached interaction per page, warm caches."""
    titles = ["Home"] + [page_title(p) for p in page_files()]
    out = []
    async with Session(browser, server, args.step_timeout) as s:
        await s.timed(s.goto(), chart=None)
        for title in titles:
            entry: dict[str, Any] = {"page": title}

            async def steps(title=title, entry=entry) -> dict[str, Any]:
                if title != "Home":
                    await s.timed(s.nav(title), chart=None)
                entry["chart_before_a_button"] = await s.shows(f'{FRESH} [data-testid="stPlotlyChart"]', 3.0)
                name, there, back, chart = INTERACTIONS.get(title, (None, None, None, False))
                expect = CHART if chart else None
                if there is not None:  # once unmeasured: fills the caches and, for a button, the page's section
                    await s.timed(_act(s, there), chart=expect)
                    await s.timed(_act(s, back), chart=expect)
                charts = await s.page.locator(CHART).count()
                firsts = []
                for _ in range(args.repeats + 1):
                    await s.timed(s.nav("Zoo" if title == "Home" else "Home"), chart=None)
                    firsts.append(await s.timed(s.nav(title), chart=CHART if charts else None))
                entry.update(first_chart_s=_median(f["seconds"] for f in firsts[1:]),
                             draws_a_chart=bool(charts))
                times = []
                if there is not None:
                    for _ in range(args.repeats):
                        for spec in (there, back):
                            times.append(await s.timed(_act(s, spec), chart=expect))
                    entry.update(interaction=name, interaction_s=_median(t["seconds"] for t in times))
                return {"exception": next((t["exception"] for t in firsts + times if t["exception"]), None)}
            entry.update(await guarded(steps))
            entry.setdefault("draws_a_chart", False)
            entry.setdefault("first_chart_s", None)
            out.append(entry)
            print(json.dumps(entry), flush=True)
    return out


def kept_on_disk_row(r: dict[str, Any]) -> bool:
    """Whether a result came back after the restart rather than being computed again: drawn in under 5 s and
    in under half the time it took uncached (a recomputation faster than ``--disk-wait`` is not a read)."""
    after = r.get("after_restart_s")
    return after is not None and r["seconds"] is not None and after < min(UNCACHED_BUDGET, 0.5 * r["seconds"])


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    """Each budget row: met or not, in words (also written into each uncached row as ``verdict``)."""
    warm_rows, slow = result["warm"], result["uncached"]
    charted = [r for r in warm_rows if r["draws_a_chart"]]
    inter = [r for r in warm_rows if "interaction_s" in r]
    under = lambda v, budget: v is not None and v < budget  # noqa: E731
    out = {"warm: every page's first chart < 2 s":
           f"{sum(under(r['first_chart_s'], FIRST_CHART_BUDGET) for r in charted)}/{len(charted)} pages that draw "
           "a chart",
           "warm: every cached interaction < 1 s":
           f"{sum(under(r['interaction_s'], INTERACTION_BUDGET) for r in inter)}/{len(inter)}"}
    for r in slow:
        # a new session on a warm server is a first chart with warm caches; training has its own budget
        budget = (FIRST_CHART_BUDGET if r["row"].endswith("(second session)") else
                  TRAIN_BUDGET if r["page"] == "Train a zoo" else UNCACHED_BUDGET)
        if under(r["seconds"], budget):
            r["verdict"] = f"met: under {budget:.0f} s"
        elif r.get("failed"):
            r["verdict"] = "not measured: " + r["failed"]
        elif r["page"] in ("Home", "Train a zoo"):
            r["verdict"] = f"not met: over {budget:.0f} s"
        else:
            missing = [what for what, ok in (("progress bar", r["progress_after_s"] is not None),
                                             ("other tab served", r.get("probe_s") is not None),
                                             ("kept on disk", kept_on_disk_row(r))) if not ok]
            r["verdict"] = ("met: progress bar, not blocking, kept on disk" if not missing
                            else "not met: " + ", ".join(f"no {m}" for m in missing))
        out[r["row"]] = r["verdict"]
    return out


async def main_async(args: argparse.Namespace, work: Path, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The three parts in order; ``save`` is called with the result so far after each (a run cut short
    still leaves what it measured)."""
    from playwright.async_api import async_playwright

    server = Server(work)
    result: dict[str, Any] = {"server_start_s": round(server.start(), 1), "warm": [], "parts_done": []}
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                result["uncached"] = await uncached(browser, server, args)
                result["parts_done"].append("uncached")
                save(result)
                result["warm"] = await warm(browser, server, args)
                result["parts_done"].append("warm")
                save(result)
                await kept_on_disk(browser, server, result["uncached"], args)
                result["parts_done"].append("kept on disk")
            finally:
                await browser.close()
    finally:
        server.stop()
    return result


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def table(result: dict[str, Any]) -> str:
    """The README tables (Markdown) from a results file."""
    lines = ["| page | first chart (warm, through the sidebar) | cached interaction |", "|---|---|---|"]
    for r in result["warm"]:
        bound = lambda v: "past its bound" if v is None else _s(v)  # noqa: E731
        first = bound(r["first_chart_s"]) if r["draws_a_chart"] else "- (draws no chart)"
        if r["draws_a_chart"] and not r.get("chart_before_a_button", True):
            first += " (revisited after pressing its button)"
        inter = f"{bound(r['interaction_s'])} ({r['interaction']})" if "interaction" in r else "-"
        lines.append(f"| {r['page']} | {first} | {inter} |")
    lines += ["", "| uncached computation | seconds | progress bar after | another tab's Zoo chart meanwhile "
              "| after a restart | budget |", "|---|---|---|---|---|---|"]
    for r in result["uncached"]:
        seconds = (_s(r["seconds"]) if r["seconds"] is not None else
                   "not measured" if r.get("failed") else f"over {result['step_timeout_s']:.0f} s")
        restart = "-" if "after_restart_s" not in r else (
            _s(r["after_restart_s"]) if r["after_restart_s"] is not None
            else f"recomputed (nothing within {result['disk_wait_s']:.0f} s)")
        bar = _s(r["progress_after_s"]) if r["progress_after_s"] is not None else "none"
        lines.append(f"| {r['row']} | {seconds} | {bar} | {_s(r.get('probe_s'))} | {restart} "
                     f"| {r.get('verdict', '-')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="measured repetitions of each warm step")
    parser.add_argument("--step-timeout", type=float, default=240.0, help="seconds one step may take")
    parser.add_argument("--probe-after", type=float, default=3.0,
                        help="seconds into an uncached computation when a second tab opens the Zoo page")
    parser.add_argument("--disk-wait", type=float, default=15.0,
                        help="seconds a result may take after a restart to count as kept on disk")
    parser.add_argument("--table", action="store_true", help="print the README tables from the results file")
    args = parser.parse_args()
    if table_only(args.table, RESULTS, table):
        return
    load = [round(v, 1) for v in os.getloadavg()]
    started = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    def save(result: dict[str, Any]) -> None:
        result.update(zoo=ZOO, viewport=VIEWPORT, repeats=args.repeats, step_timeout_s=args.step_timeout,
                      probe_after_s=args.probe_after, disk_wait_s=args.disk_wait,
                      seconds=round(time.perf_counter() - started, 1), commit=commit or None,
                      machine={"cpus": os.cpu_count(), "python": platform.python_version()},
                      load_average_at_start=load, load_average_at_end=[round(v, 1) for v in os.getloadavg()])
        result["budget"] = verdicts(result)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="wslviz-responsiveness-") as tmp:
        result = asyncio.run(main_async(args, Path(tmp), save))
    save(result)
    print(table(result))
    print(json.dumps(result["budget"], indent=1))
    print(f"wrote {RESULTS.relative_to(ROOT)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
