"""Responsiveness of the app on the bundled moons-mlp zoo: time to first chart per page and time per
cached interaction, with warm caches (each measurement is preceded by the same action once, unmeasured).

Two harnesses, side by side in one run:
- **browser**: ``streamlit run app.py`` on a loopback port driven by Debian's chromium through Playwright;
  time from navigation to the first Plotly chart drawn (includes the websocket, the script run, the
  transfer and plotly.js rendering). Pages that draw nothing before a button is pressed have no figure.
- **script**: ``streamlit.testing.v1.AppTest`` of ``app.py``; time of the script run after a page switch
  (first paint) and after one interaction (a widget change or the page's compute button, cached).

Budget (issue 8): first chart < 2 s, cached interaction < 1 s. Prints a table and writes
``benchmarks/results/bench_responsiveness.json``. Usage: ``.venv/bin/python benchmarks/bench_responsiveness.py``
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_responsiveness.json"
CHROMIUM = "/usr/bin/chromium"
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'
REPEATS = 3
sys.path.insert(0, str(ROOT))

from wslviz.ui.home import page_files, page_title  # noqa: E402


def _other_option(at: AppTest, key: str):
    """A value of selectbox ``key`` different from its current one."""
    box = at.selectbox(key=key)
    return next(o for o in box.options if o != box.value)


# page title -> (description, action on an AppTest already showing the page); the action is a cached
# interaction: it is performed once unmeasured, so the measured repetition hits warm caches.
def _zoo(at: AppTest) -> None:
    box = at.selectbox(key="zoo_color_by")
    box.set_value(box.options[(box.options.index(box.value) + 1) % len(box.options)]).run()


INTERACTIONS: dict[str, tuple[str, Callable[[AppTest], object]]] = {
    "Home": ("tour: next step", lambda at: at.button(key="tour_next").click().run()),
    "Zoo": ("change 'colour by'", _zoo),
    "Symmetry": ("apply a random symmetry", lambda at: at.button(key="sym_apply").click().run()),
    "Landscape": ("compute paths (cached)", lambda at: at.button(key="land_path_go").click().run()),
    "Projections": ("change 'colour by'", lambda at: at.selectbox(key="proj_color").set_value(
        _other_option(at, "proj_color")).run()),
    "Predict": ("fit predictor (cached)", lambda at: at.button(key="predict_fit_go").click().run()),
    "Generate": ("generate (cached)", lambda at: at.button(key="gen_go").click().run()),
}


def _median_time(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params["zoo"] = "moons-mlp"
    return at.run()


def script_timings() -> dict[str, dict]:
    """AppTest script-run times: first paint of each page (a rerun of the page, warm caches) and one
    cached interaction."""
    out: dict[str, dict] = {}
    home = _app()  # AppTest cannot switch to the home page (a function page), so it gets its own session
    name, act = INTERACTIONS["Home"]
    act(home)
    out["Home"] = {"first_paint_script_s": _median_time(home.run), "interaction": name,
                   "interaction_script_s": _median_time(lambda: act(home))}
    at = _app()
    for f in page_files():
        title = page_title(f)
        at.switch_page(f"pages/{f.name}").run()  # cold: warms the caches
        entry: dict = {"first_paint_script_s": _median_time(at.run)}
        if title in INTERACTIONS:
            name, act = INTERACTIONS[title]
            act(at)  # warm
            entry.update(interaction=name, interaction_script_s=_median_time(lambda act=act: act(at)))
        entry["exceptions"] = len(at.exception)
        out[title] = entry
    return out


def browser_timings() -> dict[str, float | None]:
    """Seconds from navigation to the first drawn chart, per page (warm: the page was loaded before)."""
    if not Path(CHROMIUM).is_file():
        print(f"{CHROMIUM} missing: browser timings skipped (make test installs it)")
        return {}
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "WSLVIZ_ZOO"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, float | None] = {}
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1366, "height": 850})
            for title, url in [("Home", "")] + [(page_title(f), page_title(f)) for f in page_files()]:
                times = []
                for i in range(REPEATS + 1):
                    t = time.perf_counter()
                    page.goto(f"{base}/{url}?zoo=moons-mlp")
                    try:
                        page.wait_for_selector(CHART, timeout=60_000 if i == 0 else 20_000)
                    except PlaywrightTimeout:
                        times = []
                        break
                    times.append(time.perf_counter() - t)
                out[title] = statistics.median(times[1:]) if times else None
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def main() -> None:
    browser = browser_timings()
    script = script_timings()
    rows = []
    for title, entry in script.items():
        rows.append({"page": title, "browser_first_chart_s": browser.get(title), **entry})
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    print(f"{'page':<12} {'first chart, browser (s)':>25} {'first paint, script (s)':>24} "
          f"{'cached interaction (s)':>23}  interaction")
    for r in rows:
        print(f"{r['page']:<12} {fmt(r['browser_first_chart_s']):>25} {fmt(r['first_paint_script_s']):>24} "
              f"{fmt(r.get('interaction_script_s')):>23}  {r.get('interaction', '-')}")
    charts = [r["browser_first_chart_s"] for r in rows if r["browser_first_chart_s"] is not None]
    inter = [r["interaction_script_s"] for r in rows if r.get("interaction_script_s") is not None]
    summary = {"pages_with_first_chart_under_2s": f"{sum(v < 2 for v in charts)}/{len(charts)}",
               "cached_interactions_under_1s": f"{sum(v < 1 for v in inter)}/{len(inter)}"}
    print(summary)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"zoo": "moons-mlp", "repeats": REPEATS, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version()}, "pages": rows, "summary": summary},
        indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
