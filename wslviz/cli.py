"""The ``wslviz`` command: ``make-zoo``, ``info``, ``export``, ``app``, ``serve`` and ``precompute``.

``wslviz app`` is for one user on their own machine: it listens on 127.0.0.1 only. ``wslviz serve`` shares
the app (a classroom): folder paths only inside ``--zoo-root`` folders, capped per-session uploads, no code
from the browser, no server paths in messages (:mod:`wslviz.ui.serve`); it listens on ``--address``.

Expected failures (a malformed zoo, an existing output folder, an unknown recipe) print one line on
stderr and exit with status 1 or 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from wslviz.formats import ZooFormatError

ROOT = Path(__file__).resolve().parents[1]
ZOO_ENV = "WSLVIZ_ZOO"
"""Environment variable through which ``wslviz app ZOO`` tells ``app.py`` which zoo to open."""
ZOO_OPTIONS_ENV = "WSLVIZ_ZOO_OPTIONS"
"""Environment variable (JSON) through which ``wslviz app ZOO --activation ...`` passes what the checkpoints
do not record to the reader of that zoo (``wslviz.ui.ENV_OPTIONS``)."""
LOOPBACK = "127.0.0.1"
STREAMLIT = ["--browser.gatherUsageStats", "false"]
SERVE_STREAMLIT = ["--server.headless", "true", "--client.showErrorDetails", "none", "--client.toolbarMode",
                   "minimal", "--server.fileWatcherType", "none", "--server.runOnSave", "false"]
"""Streamlit options of serve mode: no browser opened, no tracebacks (they name server files), no developer
menu, no reloading of edited files."""


class CommandError(Exception):
    """An expected failure: reported as one line, exit status 1."""


def _make_zoo(args: argparse.Namespace) -> None:
    from wslviz.core.training import RECIPES, train_zoo
    from wslviz.formats import save_zoo

    names = args.only or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise CommandError(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    out = Path(args.out)
    # refuse before training, not after minutes of work
    for name in names:
        target = out / name
        if target.exists() and not target.is_dir():
            raise CommandError(f"{target} exists and is not a folder")
        if target.exists() and any(target.iterdir()) and not args.overwrite:
            raise CommandError(f"{target} exists; pass --overwrite to replace it")
    for name in names:
        start = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int, name: str = name, last: list[float] = last) -> None:
            now = time.perf_counter()
            if done == total or now - last[0] > 5:
                last[0] = now
                print(f"  {name}: {done}/{total} epochs", file=sys.stderr, flush=True)

        print(f"training {name} ...", file=sys.stderr, flush=True)
        zoo = train_zoo(RECIPES[name], seed=args.seed, progress=progress)
        path = save_zoo(zoo, out / name, overwrite=args.overwrite)
        print(f"{path}: {zoo.n_models} models, {zoo.n_checkpoints} checkpoints, {zoo.n_params} params "
              f"({time.perf_counter() - start:.1f} s)")


def _zoo_options(args: argparse.Namespace) -> dict:
    """The reader options stated on the command line (see :func:`_add_zoo_options`)."""
    options: dict = {}
    if args.activation:
        options["activation"] = args.activation
    if args.input_shape:
        try:
            options["input_shape"] = [int(s) for s in args.input_shape.replace("x", ",").split(",") if s.strip()]
        except ValueError:
            raise CommandError(f"--input-shape {args.input_shape!r}: expected sizes like 1,28,28") from None
    if args.arch:
        options["arch"] = args.arch
    if args.stack is not None:
        options["stack"] = int(args.stack) if args.stack.isdigit() else args.stack
    if args.group is not None:
        options["group"] = args.group
    if args.task:
        options["task"] = str(Path(args.task).expanduser().resolve())
    return options


def _add_zoo_options(p: argparse.ArgumentParser) -> None:
    """What a folder of checkpoints cannot tell, stated for the zoo given (``wv.load_zoo`` options)."""
    g = p.add_argument_group("what the checkpoints do not record (folders of checkpoints)")
    g.add_argument("--activation", help="activation between layers (default: relu, shown as assumed)")
    g.add_argument("--input-shape", metavar="C,H,W", help="input shape of a CNN, e.g. 1,28,28")
    g.add_argument("--arch", metavar="SPEC", help="the architecture: JSON spec text or a .json file")
    g.add_argument("--stack", help="one of several stacks in a state dict (index or name, e.g. action_net)")
    g.add_argument("--group", type=int, help="one of several architectures in a folder (0 = most files)")
    g.add_argument("--task", metavar="NPZ", help="evaluation data: a .npz with arrays x and y")


def _info(args: argparse.Namespace) -> None:
    from wslviz.core.protocol import assumed_of
    from wslviz.scale.cache import load_zoo

    zoo = load_zoo(args.zoo, **_zoo_options(args))
    for key, value in zoo.summary().items():
        print(f"{key}: {value}")
    for key, value in assumed_of(zoo.arch).items():
        print(f"assumed {key}: {value}")
    for name, reason in zoo.extra.get("skipped", {}).items():
        print(f"skipped {name}: {reason}")
    if zoo.description:
        print(f"description: {zoo.description}")
    print(f"metadata columns: {', '.join(map(str, zoo.metadata.columns))}")


def _export(args: argparse.Namespace) -> None:
    from wslviz.formats import save_zoo
    from wslviz.scale.cache import load_zoo

    zoo = load_zoo(args.zoo, **_zoo_options(args))
    path = save_zoo(zoo, args.out, overwrite=args.overwrite)
    print(f"{path}: {zoo.n_checkpoints} checkpoints written in the native format")


def _app_script() -> Path:
    app = ROOT / "app.py"
    if not app.is_file():
        raise CommandError(f"{app} not found: `wslviz app` runs from a source checkout of wslviz")
    return app


def _zoo_env(zoo: str | None, env: dict[str, str]) -> dict[str, str]:
    """``env`` with ``$WSLVIZ_ZOO`` set to the resolved ``zoo`` (which must exist) when given."""
    if zoo:
        path = Path(zoo).expanduser().resolve()
        if not path.exists():
            raise CommandError(f"{path}: no such file or directory")
        env[ZOO_ENV] = str(path)
    return env


def _app(args: argparse.Namespace) -> int:
    app = _app_script()
    if any(a.split("=", 1)[0] == "--server.address" for a in args.streamlit_args):
        raise CommandError("`wslviz app` listens on 127.0.0.1 only; use `wslviz serve --zoo-root DIR "
                           "--address ADDRESS` to share the app")
    env = _zoo_env(args.zoo, dict(os.environ))
    options = _zoo_options(args)
    if options:
        if not args.zoo:
            raise CommandError("--activation/--input-shape/--arch/--stack/--group/--task describe the ZOO given")
        env[ZOO_OPTIONS_ENV] = json.dumps(options)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), *STREAMLIT, "--server.address", LOOPBACK,
           *args.streamlit_args]
    return subprocess.call(cmd, cwd=ROOT, env=env)


def _serve(args: argparse.Namespace) -> int:
    from wslviz.ui.serve import ServeRules

    app = _app_script()
    roots = []
    for root in args.zoo_root:
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise CommandError(f"--zoo-root {root}: not a folder")
        roots.append(path)
    if args.max_upload_mb < 1:
        raise CommandError(f"--max-upload-mb must be at least 1, got {args.max_upload_mb}")
    rules = ServeRules(tuple(roots), args.max_upload_mb)
    env = {k: v for k, v in os.environ.items() if k != ZOO_ENV}
    env = _zoo_env(args.zoo, env)
    if ZOO_ENV in env and not any(Path(env[ZOO_ENV]).is_relative_to(r) for r in roots):
        raise CommandError(f"{env[ZOO_ENV]} is not inside a --zoo-root: a served app opens zoos there only")
    env.update(rules.environment())
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), *STREAMLIT, *SERVE_STREAMLIT,
           "--server.address", args.address, "--server.port", str(args.port),
           "--server.maxUploadSize", str(args.max_upload_mb)]
    shared = ", ".join(map(str, roots))
    print(f"serving wslviz on http://{args.address}:{args.port} (zoos under {shared}; uploads up to "
          f"{args.max_upload_mb} MB)", file=sys.stderr, flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)


def _precompute(args: argparse.Namespace) -> None:
    from wslviz.represent.features import FeatureError
    from wslviz.scale.precompute import CacheError, precompute_zoo

    features = [k.strip() for k in args.features.split(",") if k.strip()]
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - last[0] > 5:
            last[0] = now
            print(f"  {done}/{total} chunks", file=sys.stderr, flush=True)

    try:
        report = precompute_zoo(args.zoo, args.out, features=features, align_to=args.align_to, evaluate=args.evaluate,
                                scheduler=args.scheduler, n_workers=args.workers, chunk_size=args.chunk_size,
                                device=args.device, progress=progress)
    except (CacheError, FeatureError, ValueError) as e:
        raise CommandError(str(e)) from None
    state = "complete" if report.complete else "incomplete (rerun to continue)"
    print(f"{report.cache}: {report.n_chunks} chunks, {report.computed} computed, {report.skipped} already done, "
          f"{state} ({report.seconds:.1f} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wslviz", description="Weight space learning: model zoos as data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("make-zoo", help="train the bundled sample zoos (all, or --only NAME ...)")
    p.add_argument("--out", default="sample_zoo", help="folder that receives one sub-folder per zoo")
    p.add_argument("--only", nargs="+", action="extend", metavar="NAME", help="train only these recipes")
    p.add_argument("--seed", type=int, default=0, help="run seed (model seeds and hyper-parameter draws)")
    p.add_argument("--overwrite", action="store_true", help="replace zoos that already exist")
    p.set_defaults(func=_make_zoo)

    p = sub.add_parser("info", help="print a zoo's summary")
    p.add_argument("zoo", help="path of a zoo in any supported layout")
    _add_zoo_options(p)
    p.set_defaults(func=_info)

    p = sub.add_parser("export", help="convert any readable zoo to the native format")
    p.add_argument("zoo", help="path of a zoo in any supported layout")
    p.add_argument("out", help="folder to write the native zoo to")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _add_zoo_options(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("app", help="start the Streamlit app (on ZOO when given)",
                       description="Start the Streamlit app. Options after `--` go to `streamlit run`, "
                                   "e.g. `wslviz app sample_zoo/digits-cnn -- --server.port 8600`.")
    p.add_argument("zoo", nargs="?", help="zoo to open first (passed to the app as $WSLVIZ_ZOO)")
    _add_zoo_options(p)
    p.set_defaults(func=_app)

    p = sub.add_parser("serve", help="share the app with a class: zoos from --zoo-root folders only",
                       description="Serve the app to other machines. Browsers may open zoos only inside the "
                                   "--zoo-root folders (and the bundled ones), uploads are capped and kept per "
                                   "session, no code is loaded from the browser and messages name no server "
                                   "path. Listens on 127.0.0.1 unless --address says otherwise, e.g. "
                                   "`wslviz serve --zoo-root /data/zoos --address 0.0.0.0`.")
    p.add_argument("zoo", nargs="?", help="zoo to open first (inside a --zoo-root)")
    p.add_argument("--zoo-root", action="append", required=True, metavar="DIR",
                   help="a folder whose zoos browsers may open (repeat for several)")
    p.add_argument("--address", default=LOOPBACK,
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    p.add_argument("--max-upload-mb", type=int, default=100,
                   help="largest archive a browser may upload, in MB (default 100)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("precompute", help="precompute features/alignments/evaluations of a large zoo with Dask",
                       description="Precompute per-checkpoint results in parallel (dask.distributed) into a cache "
                                   "that `wslviz app` and wv.load_zoo pick up. Rerunning resumes.")
    p.add_argument("zoo", help="path of a zoo in any supported layout")
    p.add_argument("--out", help="cache folder (default: the per-user cache, $WSLVIZ_CACHE/<fingerprint> or "
                                 "~/.cache/wslviz/<fingerprint>, where the app finds it; nothing is written "
                                 "into ZOO)")
    p.add_argument("--features", default="stats,spectral",
                   help="comma-separated kinds among stats, spectral, functional, aligned (default: stats,spectral)")
    p.add_argument("--align-to", type=int, metavar="ROW",
                   help="reference checkpoint row for 'aligned' (default: best final checkpoint)")
    p.add_argument("--evaluate", action="store_true", help="also compute loss and accuracy on train and test")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="existing Dask scheduler, e.g. tcp://host:8786 (workers must see ZOO and --out)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes when no --scheduler (default 2)")
    p.add_argument("--chunk-size", type=int, help="checkpoints per task (default: by memory and worker count)")
    p.add_argument("--device", default="cpu",
                   help="where evaluations run: cpu (default), cuda or cuda:N (a CUDA device on every worker)")
    p.set_defaults(func=_precompute)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wslviz`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after `--` is for `streamlit run`
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if extra and args.command != "app":
        parser.error("options after `--` are only for `wslviz app`")
    args.streamlit_args = extra
    try:
        return int(args.func(args) or 0)
    except (CommandError, ZooFormatError, FileExistsError) as e:
        print(f"wslviz {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"wslviz {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
