"""A classroom on one server: concurrent browser sessions against one ``wslviz serve`` process.

One ``wslviz serve`` (loopback only, a free port) and one Debian chromium (``/usr/bin/chromium``, never a
downloaded browser) with one Playwright context per student. Every session opens the home page on the
bundled ``moons-mlp`` zoo, then walks every page through the sidebar (one Streamlit session per student,
as in a lecture) and does one interaction per page (the page's main button or a "colour by" change).

Measured per session and page:
- **first chart**: from the navigation click (or the first page load) until the page's script run has
  finished and a fresh Plotly chart is drawn (pages that draw none before a button is pressed count as
  "ready" instead);
- **interaction**: from the click until the run it triggered has finished (and, where one is expected,
  a fresh chart is drawn);
- **errors**: exception boxes, error boxes, timeouts and lost connections (must be 0);
- **server CPU** (user + system seconds of its process tree during a phase: the browsers run on the same
  machine, so this tells the server's share from theirs) and **peak server memory**: RSS of the server's
  process tree (``wslviz serve`` and its Streamlit child),
  sampled every 0.25 s with psutil.

Phases: one warm-up session alone (a teacher opening the app first: fills the shared caches, not
measured), then each of ``--sessions`` (default 10 and 30) students at once. The zoo and the cached results
are shared by all sessions (``st.cache_resource`` / ``st.cache_data`` in the app), so memory should grow
far less than the number of sessions. ``--large`` runs instead one session walking every page of a
generated 50,000-checkpoint zoo (made in a temporary folder like ``tests/test_formats_large.py`` does,
with the moons task) and reports that server's peak memory.

Bounded: every step times out after ``--step-timeout`` s, the warm-up after ``--warmup-timeout`` s and each
phase after its ``--phase-timeout`` s (unfinished sessions count as errors; the defaults keep a run under
10 minutes), and the server and chromium are stopped by their process ids at the end.
Writes ``benchmarks/results/bench_classroom.json`` (the classroom and large runs are merged into it).

Usage: ``.venv/bin/python benchmarks/bench_classroom.py [--sessions 10 30]`` and ``... --large``.
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
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_classroom.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 850}
FRESH = '[data-testid="stElementContainer"]:not([data-stale="true"])'
CHART = f'{FRESH} [data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'
PROBLEMS = f'{FRESH} [data-testid="stException"], {FRESH} [data-testid="stAlertContentError"]'
LARGE_N = 50_000
# counts finished script runs: the app root's data-test-script-state attribute turning "notRunning"
INIT_SCRIPT = """
window.__runs = 0;
new MutationObserver(ms => { for (const m of ms) {
  if (m.target.getAttribute('data-test-script-state') === 'notRunning' && m.oldValue !== 'notRunning') window.__runs++;
}}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                       attributeFilter: ['data-test-script-state']});
"""
DONE = """([n, chart, sel]) => window.__runs > n && (!chart || document.querySelector(sel) !== null)"""
# page title -> (kind, label, whether a fresh chart follows)
INTERACTIONS: dict[str, tuple[str, str, bool]] = {
    "Home": ("button", "Next step", False),
    "Zoo": ("select", "colour by", True),
    "Projections": ("select", "colour by", True),
    "Symmetry": ("button", "Apply another random symmetry", True),
    "Landscape": ("button", "Compute paths", True),
    "Predict": ("button", "Fit predictor", True),
    "Generate": ("button", "Generate", True),
}
sys.path.insert(0, str(ROOT))

from wslviz.ui.home import page_files, page_title  # noqa: E402


# ---------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int, work: Path, log: Path) -> subprocess.Popen:
    """``wslviz serve --zoo-root ROOT`` on 127.0.0.1:PORT in its own process group; waits for its health check."""
    env = {k: v for k, v in os.environ.items() if k != "WSLVIZ_ZOO"}
    env.update(TMPDIR=str(work), WSLVIZ_CACHE=str(work / "user-cache"))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wslviz.cli", "serve", "--zoo-root", str(root), "--port",
                                 str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the process group we started (its id is the leader's pid)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


class MemorySampler(threading.Thread):
    """Samples the RSS of a process and its children every ``interval`` s; ``peak`` since the last reset."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(pid), interval
        self.peak = self.current = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        total = 0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def reset(self) -> int:
        self.peak = self.current = self.rss()
        return self.current

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the process tree (children that ended are not counted)."""
        total = 0.0
        for p in [self.root, *self.root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.current = self.rss()
            except psutil.Error:
                return
            self.peak = max(self.peak, self.current)
            self._stop.wait(self.interval)

    def close(self) -> None:
        self._stop.set()


# ---------------------------------------------------------------------------------------------- sessions
@dataclass
class Record:
    """What one phase measured."""

    first_chart: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    interaction: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    chart_pages: set[str] = field(default_factory=set)
    sessions_done: int = 0


async def _timed(page, action: Callable[[], Awaitable[Any]], chart: bool, timeout_ms: int) -> float:
    """Seconds from ``action`` until the script run it triggers has finished (and a fresh chart is drawn)."""
    before = await page.evaluate("window.__runs || 0")
    start = time.perf_counter()
    await action()
    await page.wait_for_function(DONE, arg=[before, chart, CHART], timeout=timeout_ms)
    return time.perf_counter() - start


async def _problems(page) -> str | None:
    boxes = page.locator(PROBLEMS)
    if await boxes.count():
        return (await boxes.first.inner_text())[:300]
    if await page.locator('[data-test-connection-state="DISCONNECTED_FOREVER"]').count():
        return "connection lost"
    return None


async def _interact(page, title: str) -> Callable[[], Awaitable[Any]]:
    kind, label, _ = INTERACTIONS[title]
    if kind == "button":
        return lambda: page.get_by_role("button", name=label, exact=True).first.click()

    async def select() -> None:  # the next option of the selectbox labelled ``label``
        box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True)).first
        await box.locator("input").first.click()
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")

    return select


async def walk(browser, base: str, zoo: str, record: Record, titles: list[str], timeout_ms: int,
               learn_charts: bool = False, delay: float = 0.0) -> None:
    """One student: the home page, then every page through the sidebar, one interaction on each. The
    warm-up walk (``learn_charts``) notes which pages draw a chart at first paint and prints each step."""
    log = (lambda text: print(f"  {text}", flush=True)) if learn_charts else (lambda text: None)
    await asyncio.sleep(delay)
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(INIT_SCRIPT)
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    try:
        for i, title in enumerate(titles):
            step = f"{title}: open"
            try:
                if i == 0:
                    action = lambda: page.goto(f"{base}/?zoo={zoo}")
                else:
                    link = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first
                    action = link.click
                has_chart = title in record.chart_pages and not learn_charts
                seconds = await _timed(page, action, has_chart, timeout_ms)
                if learn_charts:
                    try:
                        await page.wait_for_selector(CHART, timeout=5_000)
                        record.chart_pages.add(title)
                    except Exception:  # noqa: BLE001 - the page draws no chart before a button
                        pass
                (record.first_chart if has_chart else record.ready).append(seconds)
                log(f"{step}: {seconds:.1f} s")
                if problem := await _problems(page):
                    record.errors.append(f"{step}: {problem}")
                if title in INTERACTIONS:
                    step = f"{title}: {INTERACTIONS[title][1]}"
                    seconds = await _timed(page, await _interact(page, title), INTERACTIONS[title][2], timeout_ms)
                    record.interaction.append(seconds)
                    log(f"{step}: {seconds:.1f} s")
                    if problem := await _problems(page):
                        record.errors.append(f"{step}: {problem}")
            except Exception as e:  # noqa: BLE001 - a timeout or a lost page is an error of this run
                record.errors.append(f"{step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        record.sessions_done += 1
    finally:
        await context.close()


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50_s": None, "p95_s": None, "max_s": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "p50_s": round(statistics.median(ordered), 3), "p95_s": round(p95, 3),
            "max_s": round(ordered[-1], 3)}


async def phase(browser, base: str, zoo: str, n: int, titles: list[str], chart_pages: set[str],
                step_timeout: float, phase_timeout: float, sampler: MemorySampler) -> dict[str, Any]:
    """``n`` sessions at once (started 0.2 s apart, as a class arriving); their figures and the peak memory."""
    record = Record(chart_pages=set(chart_pages))
    baseline, cpu = sampler.reset(), sampler.cpu_seconds()
    start = time.perf_counter()
    tasks = [asyncio.create_task(walk(browser, base, zoo, record, titles, int(step_timeout * 1000), delay=0.2 * i))
             for i in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=phase_timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            record.errors.append(f"session: {type(task.exception()).__name__}: {task.exception()}")
    if pending:
        record.errors.append(f"{len(pending)} session(s) unfinished after {phase_timeout:.0f} s")
    return {"sessions": n, "sessions_finished": record.sessions_done, "seconds": round(time.perf_counter() - start, 1),
            "server_cpu_s": round(sampler.cpu_seconds() - cpu, 1), "load_average": round(os.getloadavg()[0], 1),
            "errors": len(record.errors), "error_samples": record.errors[:10],
            "first_chart": _quantiles(record.first_chart), "page_ready_without_chart": _quantiles(record.ready),
            "interaction": _quantiles(record.interaction),
            "server_rss_before_mb": round(baseline / 2**20), "server_peak_rss_mb": round(sampler.peak / 2**20)}


# ---------------------------------------------------------------------------------------------- zoos
def large_zoo(folder: Path, n: int = LARGE_N) -> Path:
    """A native zoo of ``n`` checkpoints of a small moons MLP (n/10 models x 10 epochs, two varied
    hyper-parameters, random weights, accuracies evaluated), made the way ``tests/test_formats_large.py``
    makes its 50,000-row zoo."""
    import numpy as np
    import pandas as pd
    import torch

    from wslviz.core.arch import Architecture, mlp_spec
    from wslviz.core.evaluation import evaluate
    from wslviz.core.tasks import make_task
    from wslviz.core.zoo import Zoo
    from wslviz.formats import save_zoo

    arch, task = Architecture(mlp_spec([2, 16, 2])), make_task("moons")
    weights = torch.randn(n, arch.n_params, generator=torch.Generator().manual_seed(0)) * 0.5
    rows = np.arange(n)
    model = rows // 10
    meta = pd.DataFrame({"model_id": model, "epoch": rows % 10, "seed": model, "lr": np.where(model % 2, 0.1, 0.01),
                         "weight_decay": np.where(model % 3, 1e-4, 0.0)})
    result = evaluate(arch, task, weights)
    meta["test_loss"], meta["test_acc"] = result["loss"].numpy(), result["accuracy"].numpy()
    return save_zoo(Zoo(name="large-50k", metadata=meta, weights=weights, arch=arch, task=task), folder / "large-50k")


# ---------------------------------------------------------------------------------------------- main
async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    root = work / "zoos"
    root.mkdir()
    zoo = "moons-mlp"
    if args.large:
        zoo = str(large_zoo(root, args.large_n))
    port = free_port()
    server = start_server(root, port, work, work / "server.log")
    sampler = MemorySampler(server.pid)
    sampler.start()
    base = f"http://127.0.0.1:{port}"
    titles = ["Home"] + [page_title(p) for p in page_files()]
    out: dict[str, Any] = {"zoo": "large-50k" if args.large else zoo, "pages": titles,
                           "server_rss_at_start_mb": round(sampler.rss() / 2**20)}
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                warm = Record()
                started = time.perf_counter()
                try:
                    await asyncio.wait_for(walk(browser, base, zoo, warm, titles, int(args.step_timeout * 1000),
                                                learn_charts=True), timeout=args.warmup_timeout)
                except TimeoutError:
                    warm.errors.append(f"warm-up unfinished after {args.warmup_timeout:.0f} s")
                out["warm_up"] = {"seconds": round(time.perf_counter() - started, 1), "errors": len(warm.errors),
                                  "error_samples": warm.errors[:10], "pages_with_a_chart_at_first_paint":
                                  sorted(warm.chart_pages), "server_peak_rss_mb": round(sampler.peak / 2**20)}
                print(f"warm-up: {out['warm_up']}", flush=True)
                out["phases"] = []
                sessions = [1] if args.large else args.sessions
                limits = args.phase_timeout + [args.phase_timeout[-1]] * len(sessions)
                for n, limit in zip(sessions, limits, strict=False):
                    result = await phase(browser, base, zoo, n, titles, warm.chart_pages, args.step_timeout,
                                         limit, sampler)
                    print(json.dumps(result), flush=True)
                    out["phases"].append(result)
            finally:
                await browser.close()
    finally:
        sampler.close()
        stop(server)
    return out


def _fmt(q: dict[str, Any]) -> str:
    return "-" if not q["n"] else f"{q['p50_s']:.1f} / {q['p95_s']:.1f} s (n={q['n']})"


def table(results: dict[str, Any]) -> str:
    """The README table (Markdown) from a results file's ``classroom`` and ``large`` runs."""
    lines = ["| run | sessions finished | errors | first chart p50 / p95 | page ready (no chart) p50 / p95 "
             "| interaction p50 / p95 | server CPU | server peak RSS |", "|---|---|---|---|---|---|---|---|"]
    for key in ("classroom", "large"):
        run = results.get(key)
        if not run:
            continue
        for ph in run["phases"]:
            cpu = f"{ph['server_cpu_s']:.0f} s in {ph['seconds']:.0f} s" if "server_cpu_s" in ph else "-"
            lines.append(f"| {run['zoo']}, {ph['sessions']} session(s) | {ph['sessions_finished']}/{ph['sessions']} "
                         f"| {ph['errors']} | {_fmt(ph['first_chart'])} | {_fmt(ph['page_ready_without_chart'])} "
                         f"| {_fmt(ph['interaction'])} | {cpu} | {ph['server_peak_rss_mb']:,} MB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 30], help="concurrent sessions per phase")
    parser.add_argument("--large", action="store_true", help="one session on a generated 50,000-checkpoint zoo")
    parser.add_argument("--large-n", type=int, default=LARGE_N, help="checkpoints of the large zoo")
    parser.add_argument("--step-timeout", type=float, default=150.0, help="seconds for one page or interaction")
    parser.add_argument("--warmup-timeout", type=float, default=200.0, help="seconds for the warm-up walk")
    parser.add_argument("--phase-timeout", type=float, nargs="+", default=[140.0, 200.0],
                        help="seconds for each phase, in the order of --sessions (the last one repeats)")
    parser.add_argument("--commit", help="commit measured (default: git rev-parse HEAD)")
    parser.add_argument("--table", action="store_true", help="print the README table from the results file and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return
    if not Path(CHROMIUM).is_file():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium; `make test` does it)")
    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True).stdout.strip() or None
    started, load = time.perf_counter(), [round(v, 1) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="wslviz-classroom-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    result.update(commit=commit, seconds=round(time.perf_counter() - started, 1),
                  machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                           "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                           "load_average_at_end": [round(v, 1) for v in os.getloadavg()]},
                  load_average_at_start=load, step_timeout_s=args.step_timeout,
                  warmup_timeout_s=args.warmup_timeout, phase_timeout_s=args.phase_timeout)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    previous["large" if args.large else "classroom"] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
