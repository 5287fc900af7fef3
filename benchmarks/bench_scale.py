"""Zoos of the networks people hold, at their real size: opening, features and alignment against reading the files.

No download. The fixtures are fine-tuning families made from one seeded initialisation plus independent noise (0.02
of each tensor's spread) per checkpoint:

- ``resnet18xN``: N torchvision-layout ResNet-18s (11.7M parameters, ImageNet head), ``torch.save``-d state dicts
  (``.pt``), 45 MB each;
- ``resnet18stxN`` (not run by default): the same saved by ``safetensors`` (``save_file``, BatchNorm's int64 counters
  included), as exported to a model hub without a ``config.json``;
- ``gpt2xN``: N Hugging Face GPT-2-small folders (``config.json`` + ``model.safetensors``, 124M parameters, 498 MB
  each), written by ``transformers`` (needs the ``hf`` extra).

Each step runs in a child process of its own, so that its peak resident memory (``ru_maxrss``) is its own; the page
cache is warm for every step (the files are read once, untimed, before the steps). Steps:

- ``read``: every file read with its standard loader (``torch.load(weights_only=True)``, ``safetensors``'
  ``load_file``) and every tensor touched once (summed): the physical limit for opening;
- ``open``: ``wv.load_zoo(folder)`` with an empty per-user cache (``$WSLVIZ_CACHE``): every file read and written
  into the row store there (:mod:`wslviz.scale.opened`), or, for the safetensors folders, served in place (each
  file mapped as a row, every value checked for NaN/Inf: :mod:`wslviz.formats.served`), the architecture built
  (for GPT-2 the model is built from ``config.json`` by ``transformers``); the imports are done before the clock
  starts, as in a running app (for GPT-2, by building a one-block GPT-2 first: ``transformers`` imports most of its
  modules on first use);
- ``reopen``: the same again, the folder unchanged: the store (or the files) mapped, no checkpoint read;
- ``stats``, ``spectral``: the feature kinds, timed after a reopen (their peak includes it);
- ``evaluate``: ``model_outputs`` of every checkpoint on the default probe inputs (8 images, 17 sequences), against a
  per-model loop (``arch.build(w)`` and a forward) on the same inputs in the same process; the evaluator's second
  call (its first chooses between the batched call and its own loop, and is reported too);
- ``write``: as many bytes as the files hold written into a new file beside the store, from one buffer used again
  (nothing read): what any copy of the weights costs on this machine, the floor of an open that writes a store;
- ``align``: ``weight_matching`` of the second checkpoint to the first (``--align``);
- ``apptest`` (``--pages``): every page of the app run once under Streamlit's AppTest, in one process as a server
  holds them, on the zoo (``WSLVIZ_ZOO``): exceptions and error boxes counted;
- ``browser`` (``--pages``): ``streamlit run app.py`` with the zoo, Debian's Chromium through Playwright opening it
  (``?zoo=<folder>``) and visiting every page from the sidebar; the server's peak RSS (``VmHWM``) at the end.

Prints a table and writes ``benchmarks/results/bench_scale.json``. Usage:

    .venv/bin/python benchmarks/bench_scale.py [--zoos resnet18x16,resnet18x32,gpt2x4,gpt2x8] [--align] [--pages]
        [--data DIR] [--steps reopen,evaluate]

``--data DIR`` keeps the fixtures there (reused when present) instead of a temporary folder; ``--steps`` reruns some
steps and keeps the other steps' (and zoos') results in the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_scale.json"
GPT2 = {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024, "vocab_size": 50257}
STEPS = ("read", "open", "reopen", "stats", "spectral", "evaluate", "write")


def perturbed(base: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """``base`` plus noise of 0.02 of each floating tensor's spread (integer buffers and scalars unchanged)."""
    return {k: (v + 0.02 * v.std() * torch.randn(v.shape, generator=gen)).contiguous()
            if v.is_floating_point() and v.numel() > 1 else v.clone() for k, v in base.items()}


def make_resnet18(folder: Path, n: int, safetensors: bool = False) -> None:
    from safetensors.torch import save_file

    from wslviz.core.published import TorchvisionResNet

    torch.manual_seed(0)
    base = TorchvisionResNet(18).state_dict()
    gen = torch.Generator().manual_seed(1)
    folder.mkdir(parents=True)
    for i in range(n):
        if safetensors:  # as a hub export holds them: BatchNorm's int64 counters included
            save_file(perturbed(base, gen), str(folder / f"resnet18_seed{i}.safetensors"))
        else:
            torch.save(perturbed(base, gen), folder / f"resnet18_seed{i}.pt")


def make_gpt2(folder: Path, n: int) -> None:
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(**GPT2)
    base = {k: v for k, v in GPT2LMHeadModel(config).state_dict().items() if k != "lm_head.weight"}  # tied
    gen = torch.Generator().manual_seed(1)
    for i in range(n):
        run = folder / f"finetune{i}"
        run.mkdir(parents=True)
        save_file(perturbed(base, gen), str(run / "model.safetensors"), metadata={"format": "pt"})
        config.to_json_file(str(run / "config.json"))


def fixture(data: Path, name: str) -> Path:
    """The folder of zoo ``name`` (``resnet18x16``, ``resnet18stx16``, ``gpt2x4``), made when missing."""
    match = re.fullmatch(r"(resnet18|resnet18st|gpt2)x(\d+)", name)
    if match is None:
        raise SystemExit(f"unknown zoo {name!r}: resnet18xN, resnet18stxN or gpt2xN")
    folder = data / name
    if not folder.exists():
        t = time.perf_counter()
        if match[1] == "gpt2":
            make_gpt2(folder, int(match[2]))
        else:
            make_resnet18(folder, int(match[2]), safetensors=match[1] == "resnet18st")
        print(f"made {name} in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def files_of(folder: Path) -> list[Path]:
    return [f for pattern in ("*.pt", "*.safetensors", "*/model.safetensors") for f in sorted(folder.glob(pattern))]


def read_alone(folder: Path) -> float:
    from safetensors.torch import load_file

    total = 0.0
    for f in files_of(folder):
        tensors = load_file(str(f)) if f.suffix == ".safetensors" else torch.load(f, weights_only=True)
        total += sum(float(v.sum()) for v in tensors.values())
    return total


def write_alone(folder: Path) -> dict:
    """The files' bytes written into a new file in the per-user cache folder, one file's worth at a time from one
    buffer (touched before the clock): the cost of new page cache, which every store pays."""
    sizes = [f.stat().st_size for f in files_of(folder)]
    buffer = torch.ones(max(sizes) // 4 + 1).numpy()
    target = Path(os.environ["WSLVIZ_CACHE"]) / "write-floor.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(target, "wb") as out:
        for size in sizes:
            out.write(memoryview(buffer).cast("B")[:size])
    seconds = time.perf_counter() - start
    target.unlink()
    return {"seconds": seconds, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def run_step(step: str, folder: Path) -> dict:
    """One step in this process: ``{"seconds", "peak_gib"}`` (the feature steps time only the features)."""
    torch.set_num_threads(2)
    from wslviz.scale.cache import load_zoo

    if step != "read" and any(folder.glob("*/config.json")):  # transformers' modules imported before the clock,
        from wslviz.core.protocol import from_spec  # as in an app that has opened a model of the family before

        from_spec({"kind": "hf", "config": {"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2,
                                            "vocab_size": 16, "n_positions": 8, "bos_token_id": 0,
                                            "eos_token_id": 0}})
    if step == "write":
        return write_alone(folder)
    start = time.perf_counter()
    if step == "read":
        read_alone(folder)
    else:
        zoo = load_zoo(folder)
        if step in ("stats", "spectral"):
            from wslviz.represent.features import compute_features

            start = time.perf_counter()
            compute_features(zoo, step)
        elif step == "apptest":
            start = time.perf_counter()
            problems = app_test(folder)
            return {"seconds": time.perf_counter() - start, "problems": problems,
                    "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        elif step == "evaluate":  # the evaluator against the per-model loop, side by side on the same inputs
            from wslviz.core.evaluation import model_outputs
            from wslviz.understand.symmetry import probe_inputs

            x = probe_inputs(zoo.arch)
            start = time.perf_counter()
            model_outputs(zoo.arch, zoo.weights, x)  # the first call of a shape chooses the formulation
            first = time.perf_counter() - start
            start = time.perf_counter()
            batched = model_outputs(zoo.arch, zoo.weights, x)
            ours = time.perf_counter() - start
            start = time.perf_counter()
            with torch.no_grad():
                loop = torch.stack([zoo.arch.build(w)(x).reshape(len(x), -1) for w in zoo.weights])
            return {"seconds": ours, "loop_seconds": time.perf_counter() - start, "first_call_seconds": first,
                    "max_difference": float((batched - loop).abs().max()),
                    "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        elif step == "align":
            from wslviz.understand.align import weight_matching

            start = time.perf_counter()
            weight_matching(zoo.arch, zoo.weights[0], zoo.weights[1])
    return {"seconds": time.perf_counter() - start,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def app_test(folder: Path) -> list[str]:
    """Every page run once under AppTest on the zoo at ``folder``: the exceptions and error boxes, by page."""
    from streamlit.testing.v1 import AppTest

    from wslviz.ui.home import page_files

    os.environ["WSLVIZ_ZOO"] = str(folder)
    problems = []
    for script in [ROOT / "app.py", *page_files()]:
        at = AppTest.from_file(str(script), default_timeout=900).run()
        problems += [f"{script.name}: {e.value}"[:300] for kind in ("exception", "error") for e in getattr(at, kind)]
    return problems


def browser_visit(folder: Path, cache: Path) -> dict:
    """``streamlit run app.py`` on a free port, every page visited in Chromium with the zoo at ``folder``."""
    import socket
    import urllib.request
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    from wslviz.ui.home import page_files, page_title

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if k != "WSLVIZ_ZOO"}, "WSLVIZ_CACHE": str(cache)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.address", "127.0.0.1", "--server.port", str(port),
                               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, start, problems = f"http://127.0.0.1:{port}", time.perf_counter(), []
    idle = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = chromium.new_page(viewport={"width": 1366, "height": 850})
            page.goto(f"{base}/?zoo={quote(str(folder))}")
            for title in ["home", *map(page_title, page_files())]:
                if title != "home":
                    page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).first.click()
                time.sleep(1.0)
                page.wait_for_function(idle, timeout=900_000)
                problems += [f"{title}: {t[:300]}" for t in
                             page.locator('[data-testid="stException"]').all_inner_texts()]
            chromium.close()
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak = int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 2**20
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"seconds": time.perf_counter() - start, "problems": problems, "peak_gib": peak}


def child(step: str, folder: Path, cache: Path) -> dict:
    if step == "browser":
        return browser_visit(folder, cache)
    if step == "open":
        shutil.rmtree(cache, ignore_errors=True)
    out = subprocess.run([sys.executable, __file__, "--step", step, "--folder", str(folder)], capture_output=True,
                         text=True, env={**os.environ, "WSLVIZ_CACHE": str(cache)})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoos", default="resnet18x16,resnet18x32,gpt2x4,gpt2x8")
    ap.add_argument("--align", action="store_true", help="also time weight matching of a pair")
    ap.add_argument("--pages", action="store_true", help="also open every page (AppTest, then a real browser)")
    ap.add_argument("--data", type=Path, help="keep the fixtures in this folder (reused when present)")
    ap.add_argument("--steps", help="run only these steps (comma-separated), e.g. reopen,evaluate")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        print(json.dumps(run_step(args.step, args.folder)))
        return 0
    steps = STEPS + (("align",) if args.align else ()) + (("apptest", "browser") if args.pages else ())
    steps = tuple(args.steps.split(",")) if args.steps else steps
    previous = json.loads(RESULTS.read_text()) if args.steps and RESULTS.is_file() else {}  # the other steps kept
    results: dict[str, dict] = dict(previous)  # and the other zoos
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        for name in args.zoos.split(","):
            folder = fixture(data, name)
            size = sum(f.stat().st_size for f in files_of(folder))
            results[name] = {**previous.get(name, {}), "files": len(files_of(folder)), "bytes": size,
                             "largest": max(f.stat().st_size for f in files_of(folder))}
            child("read", folder, data)  # the page cache warmed for every step, the first read included
            for step in steps:
                results[name][step] = child(step, folder, data / f"cache-{name}")
                print(name, step, results[name][step], flush=True)
    print(f"\n| zoo | files (GB) | {' | '.join(steps)} | open / read | memory bound of opening |")
    print("|---|---|" + "---|" * (len(steps) + 2))
    for name, r in results.items():
        cells = [(f"{r[s]['seconds']:.1f} s, {r[s]['peak_gib']:.1f} GiB" if "seconds" in r[s] else r[s]["error"])
                 + (f", {len(r[s]['problems'])} problems" if "problems" in r[s] else "")
                 + (f" (loop {r[s]['loop_seconds']:.1f} s)" if "loop_seconds" in r[s] else "") if s in r else "-"
                 for s in steps]
        ratio = (f"{r['open']['seconds'] / r['read']['seconds']:.1f}x" if "seconds" in r.get("open", {})
                 and "seconds" in r.get("read", {}) else "-")
        bound = 1 + 2 * r["largest"] / 2**30  # GiB: 1 GiB plus twice the largest checkpoint
        print(f"| {name} | {r['files']} ({r['bytes'] / 1e9:.2f}) | {' | '.join(cells)} | {ratio} | {bound:.2f} GiB |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
