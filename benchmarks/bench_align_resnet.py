"""Residual networks: wslviz against the ``rebasin`` package on two independently trained ``digits-resnet`` models.

The pair: the two best final checkpoints of different models of ``sample_zoo/digits-resnet`` (ResNet-8 with
BatchNorm; trained by ``wslviz make-zoo``). Model B is aligned to model A by

* ours: ``wslviz.weight_matching`` with the permutation spec derived from the module's ``torch.fx`` graph
  (:mod:`wslviz.core.fx_spec`: the residual stream of each stage shares one permutation);
* theirs: ``rebasin.PermutationCoordinateDescent(model_a, model_b, x).rebasin()`` on the same ``nn.Module``s,
  run by the Python of ``benchmarks/.venv-rebasin`` (set up as in ``bench_align.py``); the module class is loaded
  there from ``wslviz/core/builtins.py`` alone (it imports only torch).

Reported (printed and written to ``benchmarks/results/bench_align_resnet.json``), same run: alignment time, and
the test-loss barrier of the straight path (25 points) naive, after matching, and after matching + BatchNorm
reset (REPAIR for BatchNorm networks, :mod:`wslviz.understand.repair`), for both aligners; and whether each
aligned B still computes B's function.

    .venv/bin/python benchmarks/bench_align_resnet.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "bench_align_resnet.json"


def _builtins():
    spec = importlib.util.spec_from_file_location("wslviz_builtins", ROOT / "wslviz" / "core" / "builtins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rebasin_side(folder: Path) -> None:
    """In ``.venv-rebasin``: align B to A with rebasin once; write B's weights and the time."""
    import torch
    from rebasin import PermutationCoordinateDescent
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    kwargs = json.loads((folder / "kwargs.json").read_text())
    make = _builtins().CifarResNet
    model_a, model_b = make(**kwargs).eval(), make(**kwargs).eval()
    model_a.load_state_dict(load_file(str(folder / "a.safetensors")), strict=False)
    model_b.load_state_dict(load_file(str(folder / "b.safetensors")), strict=False)
    x = load_file(str(folder / "x.safetensors"))["x"]
    torch.manual_seed(0)
    start = time.perf_counter()
    PermutationCoordinateDescent(model_a, model_b, x).rebasin()
    seconds = time.perf_counter() - start
    save_file({k: v.contiguous() for k, v in model_b.state_dict().items() if not k.endswith("num_batches_tracked")},
              str(folder / "b_rebasin.safetensors"))
    (folder / "rebasin.json").write_text(json.dumps({"time": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebasin-side", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rebasin_side:
        rebasin_side(args.rebasin_side)
        return
    import torch
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(HERE))
    from bench_align import ensure_venv

    import wslviz as wv
    from wslviz.scale.cache import load_zoo
    from wslviz.understand import landscape as L
    from wslviz.understand.symmetry import equivalence_gap

    torch.set_num_threads(1)
    zoo = load_zoo(ROOT / "sample_zoo" / "digits-resnet")
    final = zoo.final_index()
    acc = zoo.metadata["test_acc"].to_numpy()[final]
    ia, ib = (int(final[i]) for i in acc.argsort()[::-1][:2])
    a, b = zoo.weights[ia].float(), zoo.weights[ib].float()
    arch, task = zoo.arch, zoo.task
    start = time.perf_counter()
    ours = wv.weight_matching(arch, a, b)
    ours_time = time.perf_counter() - start
    venv_python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_file({k: v.contiguous() for k, v in arch.unflatten(a).items()}, str(folder / "a.safetensors"))
        save_file({k: v.contiguous() for k, v in arch.unflatten(b).items()}, str(folder / "b.safetensors"))
        save_file({"x": task.x_train[:256].contiguous()}, str(folder / "x.safetensors"))
        (folder / "kwargs.json").write_text(json.dumps(arch.spec["kwargs"]))
        subprocess.run([str(venv_python), __file__, "--rebasin-side", str(folder)], check=True)
        theirs = arch.flatten(load_file(str(folder / "b_rebasin.safetensors")))
        theirs_time = json.loads((folder / "rebasin.json").read_text())["time"]

    def barrier(other: torch.Tensor, repair: str) -> float:
        return L.loss_barrier(L.interpolate(arch, task, a, other, repair=repair))

    result = {
        "pair": [ia, ib], "test_acc": [float(acc.max()), float(sorted(acc)[-2])],
        "naive": {"none": barrier(b, "none"), "reset": barrier(b, "reset")},
        "wslviz": {"seconds": ours_time, "none": barrier(ours, "none"), "reset": barrier(ours, "reset"),
                   "function_gap": equivalence_gap(arch, b, ours, task.x_test)},
        "rebasin": {"seconds": theirs_time, "none": barrier(theirs, "none"), "reset": barrier(theirs, "reset"),
                    "function_gap": equivalence_gap(arch, b, theirs, task.x_test)},
    }
    for name in ("naive", "wslviz", "rebasin"):
        r = result[name]
        print(f"{name:<8} barrier {r['none']:.4f}  with BatchNorm reset {r['reset']:.4f}"
              + (f"  time {r['seconds']:.2f} s  function gap {r['function_gap']:.1e}" if "seconds" in r else ""))
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
