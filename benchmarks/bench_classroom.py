"""A classroom on one server: concurrent browser sessions against one ``wslviz serve`` process.

One ``wslviz serve`` (loopback only, a free port) and one Debian chromium (``/usr/bin/chromium``, never a
downloaded browser) with one light Playwright context per student (a small viewport, reduced motion, no
screenshots). Students arrive at random times within ``--arrival-window`` seconds (seeded: a class opening
a shared link), each opens the home page on the bundled ``moons-mlp`` zoo, then walks every page through the
sidebar (one Streamlit session per student, as in a lecture) and does one interaction per page (the page's
main button or a widget change; see ``INTERACTIONS``).

Measured per session and page:
- **first chart**: from the navigation click (or the first page load) until the page's script run has
  finished and a fresh Plotly chart is drawn (pages that draw none before a button is pressed count as
  "ready" instead);
- **interaction**: from the click until the run it triggered has finished (and, where one is expected,
  a fresh chart is drawn);
- **walk**: from a student's arrival until the last step of their walk;
- **errors** (must be 0), by kind: an exception box, an error box, a failed page (navigation failed or the
  connection was lost), a step past its bound (``--step-timeout``), a walk unfinished at the phase bound;
- **where the CPU went**: CPU-seconds (user + system, children that ended included) of the server's process
  tree, of the clients (Chromium's process tree, the Playwright driver and this script) and of everything
  else on the machine (from ``/proc/stat``), against the cores x wall seconds available; the browsers run on
  the same machine as the server here, which a real class does not;
- **memory**: peak RSS of the server's process tree (``wslviz serve`` and its Streamlit child), sampled every
  0.25 s; the sum of the clients' RSS (shared pages counted once per process, so an upper bound).

Phases: one warm-up session alone (a teacher opening the app first: fills the shared caches, not
measured), then each of ``--sessions`` (default 10 and 30) students. The zoo and the cached results are
shared by all sessions (``st.cache_resource`` / ``st.cache_data`` in the app), so server memory should grow
far less than the number of sessions. ``--large`` runs instead one session walking every page of a
generated 50,000-checkpoint zoo (made in a temporary folder like ``tests/test_formats_large.py`` does, with
the moons task) and reports that server's peak memory.

Bounded, and it stops by itself: a step waits at most ``--step-timeout`` s, the warm-up ``--warmup-timeout``
s, a phase of n sessions ``--phase-base`` + n x ``--phase-per-session`` s (unfinished walks count as
errors); the server and chromium are stopped by their process ids at the end.
Writes ``benchmarks/results/bench_classroom.json`` (the classroom and large runs are merged into it).

Usage: ``.venv/bin/python benchmarks/bench_classroom.py [--sessions 10 30]``, ``... --large`` and
``... --table`` (the README table from the results file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
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
# a lighter client: no background services, no GPU process, no shared-memory surprises in containers
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-extensions", "--mute-audio",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1024, "height": 640}  # small: less to lay out and paint per student
FRESH = '[data-testid="stElementContainer"]:not([data-stale="true"])'
CHART = f'{FRESH} [data-testid="stPlotlyChart"] .js-plotly-plot .main-svg'
EXCEPTIONS = f'{FRESH} [data-testid="stException"]'
ERROR_BOXES = f'{FRESH} [data-testid="stAlertContentError"]'
LARGE_N = 50_000
# page title -> (kind, label, whether a fresh chart follows). Train a zoo gets a widget change, not its Train
# button: 30 students each training 64 models at once measures the trainer, not serving a class.
INTERACTIONS: dict[str, tuple[str, str, bool]] = {
    "Home": ("button", "Next step", False),
    "Zoo": ("select", "colour by", True),
    "Projections": ("select", "colour by", True),
    "Symmetry": ("button", "Apply another random symmetry", True),
    "Landscape": ("button", "Compute paths", True),
    "Predict": ("button", "Fit predictor", True),
    "Generate": ("button", "Generate", True),
    "Merge": ("button", "Merge", True),
    "Train a zoo": ("select", "Task", False),
}
ERROR_KINDS = ("exception", "error box", "failed page", "step over its bound", "walk unfinished")
sys.path.insert(0, str(ROOT))

from streamlit_runs import CHROMIUM, RunCounter, table_only  # noqa: E402

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


# ---------------------------------------------------------------------------------------------- accounting
def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu(processes: list[psutil.Process]) -> float:
    """User + system CPU-seconds of ``processes`` and of their children that ended and were reaped."""
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _machine_busy() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all cores; idle and iowait excluded)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class Meter(threading.Thread):
    """Samples every ``interval`` s the RSS of the server's process tree (``peak`` since the last
    :meth:`reset`) and of the clients' (every other descendant of this process), and keeps the last CPU
    reading of both trees so that processes which end between readings still count."""

    def __init__(self, server_pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        self.server_pid, self.interval = server_pid, interval
        self.peak = self.client_peak = 0
        self._stop = threading.Event()

    def trees(self) -> tuple[list[psutil.Process], list[psutil.Process]]:
        server = _tree(self.server_pid)
        ids = {p.pid for p in server}
        me = psutil.Process()
        clients = [p for p in me.children(recursive=True) if p.pid not in ids]
        return server, clients

    def cpu(self) -> dict[str, float]:
        """CPU-seconds so far: the server tree, the clients (with this process itself) and the machine."""
        server, clients = self.trees()
        own = psutil.Process().cpu_times()
        return {"server": _cpu(server), "clients": _cpu(clients) + own.user + own.system, "machine": _machine_busy()}

    def reset(self) -> int:
        server, clients = self.trees()
        self.peak, self.client_peak = _rss(server), _rss(clients)
        return self.peak

    def run(self) -> None:
        while not self._stop.is_set():
            server, clients = self.trees()
            self.peak = max(self.peak, _rss(server))
            self.client_peak = max(self.client_peak, _rss(clients))
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
    walks: list[float] = field(default_factory=list)
    per_page: dict[str, list[float]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (kind, what happened)
    chart_pages: set[str] = field(default_factory=set)


class StepFailed(Exception):
    """A failed page: navigation failed or the connection was lost."""


async def _timed(runs: RunCounter, action: Callable[[], Awaitable[Any]], chart: bool, timeout_ms: int) -> float:
    """Seconds from ``action`` until the script run it triggers has finished (and a fresh chart is drawn)."""
    before = runs.finished
    start = time.perf_counter()
    await action()
    await runs.wait(before, CHART if chart else None, timeout_ms / 1000)
    return time.perf_counter() - start


async def _problem(page) -> tuple[str, str] | None:
    """The first exception box, error box or lost connection on the page, as (kind, text)."""
    for kind, selector in (("exception", EXCEPTIONS), ("error box", ERROR_BOXES)):
        boxes = page.locator(selector)
        if await boxes.count():
            return kind, (await boxes.first.inner_text())[:300]
    if await page.locator('[data-test-connection-state="DISCONNECTED_FOREVER"]').count():
        return "failed page", "connection lost"
    return None


def _interaction(page, title: str) -> Callable[[], Awaitable[Any]]:
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
    """One student: arrives after ``delay`` s, opens the home page, then every page through the sidebar with
    one interaction on each. The warm-up walk (``learn_charts``) notes which pages draw a chart at first
    paint and prints each step."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    log = (lambda text: print(f"  {text}", flush=True)) if learn_charts else (lambda text: None)
    await asyncio.sleep(delay)
    arrived = time.perf_counter()
    context = await browser.new_context(viewport=VIEWPORT, reduced_motion="reduce")
    page = await context.new_page()
    runs = RunCounter(page)
    page.set_default_timeout(timeout_ms)

    async def step(name: str, action: Callable[[], Awaitable[Any]], chart: bool, into: list[float]) -> bool:
        try:
            seconds = await _timed(runs, action, chart, timeout_ms)
        except (PlaywrightTimeout, TimeoutError):
            # an exception box explains a page that never drew its chart
            kind, text = await _problem(page) or ("step over its bound",
                                                  f"nothing drawn within {timeout_ms / 1000:.0f} s")
            record.errors.append((kind, f"{name}: {text}"))
            return False
        except PlaywrightError as e:
            record.errors.append(("failed page", f"{name}: {str(e).splitlines()[0][:200]}"))
            return False
        into.append(seconds)
        record.per_page.setdefault(name, []).append(seconds)
        log(f"{name}: {seconds:.1f} s")
        if problem := await _problem(page):
            record.errors.append((problem[0], f"{name}: {problem[1]}"))
            return problem[0] != "failed page"
        return True

    try:
        for i, title in enumerate(titles):
            if i == 0:
                action = lambda: page.goto(f"{base}/?zoo={zoo}")
            else:
                action = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click
            has_chart = title in record.chart_pages and not learn_charts
            if not await step(f"{title}: open", action, has_chart, record.first_chart if has_chart else record.ready):
                continue
            if learn_charts:  # a page that draws a chart at first paint has its element within seconds
                try:
                    await page.wait_for_selector(f'{FRESH} [data-testid="stPlotlyChart"]', timeout=5_000)
                    record.chart_pages.add(title)
                except PlaywrightTimeout:
                    pass
            if title in INTERACTIONS:
                await step(f"{title}: {INTERACTIONS[title][1]}", _interaction(page, title), INTERACTIONS[title][2],
                           record.interaction)
        record.walks.append(time.perf_counter() - arrived)
    finally:
        await context.close()


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50_s": None, "p95_s": None, "max_s": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "p50_s": round(statistics.median(ordered), 2), "p95_s": round(p95, 2),
            "max_s": round(ordered[-1], 2)}


def phase_bound(args: argparse.Namespace, n: int) -> float:
    """Seconds a phase of ``n`` sessions may take: a base plus a share per session (the work grows with n)."""
    return args.phase_base + args.phase_per_session * n


async def phase(browser, base: str, zoo: str, n: int, titles: list[str], chart_pages: set[str],
                args: argparse.Namespace, meter: Meter) -> dict[str, Any]:
    """``n`` sessions arriving at seeded random times within the arrival window; their figures, where the
    CPU went and the peak memory."""
    record = Record(chart_pages=set(chart_pages))
    rng = random.Random(n)
    window = min(args.arrival_window, args.phase_per_session * n)
    delays = sorted(rng.uniform(0, window) for _ in range(n))
    bound = phase_bound(args, n)
    baseline, cpu = meter.reset(), meter.cpu()
    start = time.perf_counter()
    tasks = [asyncio.create_task(walk(browser, base, zoo, record, titles, int(args.step_timeout * 1000),
                                      delay=d)) for d in delays]
    done, pending = await asyncio.wait(tasks, timeout=bound)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            record.errors.append(("failed page", f"session: {type(task.exception()).__name__}: {task.exception()}"))
    for _ in pending:
        record.errors.append(("walk unfinished", f"unfinished at the phase bound of {bound:.0f} s"))
    seconds = time.perf_counter() - start
    used = {k: v - cpu[k] for k, v in meter.cpu().items()}
    cores = psutil.cpu_count()
    return {"sessions": n, "sessions_finished": len(record.walks), "arrival_window_s": round(window, 1),
            "bound_s": bound, "seconds": round(seconds, 1),
            "cpu_s": {"server": round(used["server"], 1), "clients": round(used["clients"], 1),
                      "other": round(max(0.0, used["machine"] - used["server"] - used["clients"]), 1),
                      "available": round(cores * seconds, 1)},
            "load_average": [round(v, 1) for v in os.getloadavg()],
            "errors": len(record.errors),
            "errors_by_kind": {k: sum(e[0] == k for e in record.errors) for k in ERROR_KINDS},
            "error_samples": [f"{k}: {text}" for k, text in record.errors[:12]],
            "first_chart": _quantiles(record.first_chart), "page_ready_without_chart": _quantiles(record.ready),
            "interaction": _quantiles(record.interaction), "walk": _quantiles(record.walks),
            "per_step": {name: _quantiles(v) for name, v in record.per_page.items()},
            "server_rss_before_mb": round(baseline / 2**20), "server_peak_rss_mb": round(meter.peak / 2**20),
            "clients_peak_rss_sum_mb": round(meter.client_peak / 2**20)}


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
    meter = Meter(server.pid)
    meter.start()
    base = f"http://127.0.0.1:{port}"
    titles = ["Home"] + [page_title(p) for p in page_files()]
    out: dict[str, Any] = {"zoo": "large-50k" if args.large else zoo, "pages": titles, "viewport": VIEWPORT,
                           "server_rss_at_start_mb": round(meter.reset() / 2**20)}
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
                    warm.errors.append(("walk unfinished", f"warm-up unfinished after {args.warmup_timeout:.0f} s"))
                out["warm_up"] = {"seconds": round(time.perf_counter() - started, 1), "errors": len(warm.errors),
                                  "error_samples": [f"{k}: {t}" for k, t in warm.errors[:12]],
                                  "steps_s": {k: round(v[0], 2) for k, v in warm.per_page.items()},
                                  "pages_with_a_chart_at_first_paint": sorted(warm.chart_pages),
                                  "server_peak_rss_mb": round(meter.peak / 2**20)}
                print(f"warm-up: {json.dumps(out['warm_up'])}", flush=True)
                out["phases"] = []
                for n in [1] if args.large else args.sessions:
                    result = await phase(browser, base, zoo, n, titles, warm.chart_pages, args, meter)
                    print(json.dumps(result), flush=True)
                    out["phases"].append(result)
            finally:
                await browser.close()
    finally:
        meter.close()
        stop(server)
    return out


def _fmt(q: dict[str, Any]) -> str:
    return "-" if not q["n"] else f"{q['p50_s']:.1f} / {q['p95_s']:.1f} s"


def table(results: dict[str, Any]) -> str:
    """The README table (Markdown) from a results file's ``classroom`` and ``large`` runs."""
    lines = ["| run | walks finished | errors | first chart p50 / p95 | page ready (no chart) p50 / p95 "
             "| interaction p50 / p95 | walk p50 / p95 | CPU-s: server / clients / other / available "
             "| server peak RSS | load average (1, 5, 15 min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key in ("classroom", "large"):
        run = results.get(key)
        if not run:
            continue
        for ph in run["phases"]:
            if "cpu_s" in ph:
                c = ph["cpu_s"]
                cpu = f"{c['server']:.0f} / {c['clients']:.0f} / {c['other']:.0f} / {c['available']:.0f}"
            else:
                cpu = f"{ph.get('server_cpu_s', 0):.0f} / - / - / -"
            walk_q = _fmt(ph["walk"]) if "walk" in ph else "-"
            load = ph["load_average"]
            load = ", ".join(f"{v:.1f}" for v in load) if isinstance(load, list) else f"{load:.1f}"
            earlier = "" if "cpu_s" in ph else " (an earlier run, before the harness had these bounds)"
            lines.append(f"| {run['zoo']}, {ph['sessions']} session(s){earlier} "
                         f"| {ph['sessions_finished']}/{ph['sessions']} "
                         f"| {ph['errors']} | {_fmt(ph['first_chart'])} | {_fmt(ph['page_ready_without_chart'])} "
                         f"| {_fmt(ph['interaction'])} | {walk_q} | {cpu} | {ph['server_peak_rss_mb']:,} MB | {load} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 30], help="concurrent sessions per phase")
    parser.add_argument("--large", action="store_true", help="one session on a generated 50,000-checkpoint zoo")
    parser.add_argument("--large-n", type=int, default=LARGE_N, help="checkpoints of the large zoo")
    parser.add_argument("--step-timeout", type=float, default=300.0, help="seconds for one page or interaction")
    parser.add_argument("--warmup-timeout", type=float, default=600.0, help="seconds for the warm-up walk")
    parser.add_argument("--phase-base", type=float, default=120.0, help="seconds every phase may take ...")
    parser.add_argument("--phase-per-session", type=float, default=20.0, help="... plus this many per session")
    parser.add_argument("--arrival-window", type=float, default=30.0,
                        help="students arrive at random times within this many seconds")
    parser.add_argument("--commit", help="commit measured (default: git rev-parse HEAD)")
    parser.add_argument("--table", action="store_true", help="print the README table from the results file and stop")
    args = parser.parse_args()
    if table_only(args.table, RESULTS, table):
        return
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
                  warmup_timeout_s=args.warmup_timeout, phase_base_s=args.phase_base,
                  phase_per_session_s=args.phase_per_session, arrival_window_s=args.arrival_window)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    previous["large" if args.large else "classroom"] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
