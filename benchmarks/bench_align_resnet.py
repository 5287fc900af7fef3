"""Residual networks: wslviz against the ``rebasin`` package on two independently trained ``digits-resnet`` models.

The pair: the two best final checkpoints of different models of ``sample_zoo/digits-resnet`` (ResNet-8 with
BatchNorm; trained by ``wslviz make-zoo``). Model B is aligned to model A by

* ours: ``wslviz.weight_matching`` with the permutation spec derived from the module's ``torch.fx`` graph
  (:mod:`wslviz.core.fx_spec`: the residual stream of each stage shares one permutation);
* theirs: ``rebasin.PermutationCoordinateDescent(model_a, model_b, x).rebasin()`` on the same ``nn.Module``s,
  run by the Python of ``benchmarks/.venv-rebasin`` (set up as in ``bench_align.py``); the module class is loaded
  there from ``wslviz/core/builtins.py`` alone (it imports only torch).

rebasin permutes BatchNorm weights and biases but leaves the running statistics where they were (its README
asks for them to be recomputed); the wrapper reads the permutation back from the (weight, bias) pairs and applies
it to the buffers, so that both aligners' outputs are compared as permutations of B (rebasin's raw output's gap is
reported too). Also wslviz's activation matching (512 training inputs).

Reported (printed and written to ``benchmarks/results/bench_align_resnet.json``), same run: alignment time, the
distance to A, whether each aligned B still computes B's function, and the test-loss barrier of the straight path
(25 points) with no correction, the BatchNorm reset and REPAIR (:mod:`wslviz.understand.repair`), naive and for
every aligner.

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
    """In ``.venv-rebasin``: align B to A with rebasin once; write B's weights, the time, and how far rebasin's
    own output (BatchNorm running statistics as it leaves them) is from computing B's function.

    rebasin permutes a BatchNorm's ``weight`` and ``bias`` (its ``OneDimModule``) but not its ``running_mean`` and
    ``running_var`` buffers (its README: recompute them after permuting). So its raw output pairs every channel's
    affine parameters with another channel's statistics. The permutation it applied is read back from each
    BatchNorm's (weight, bias) pairs, which identify the channels, and applied to the two buffers: the weights are
    then rebasin's permutation completed, which must compute B's function wherever that permutation is a
    symmetry."""
    import torch
    from rebasin import PermutationCoordinateDescent
    from safetensors.torch import load_file, save_file
    from torch import nn

    torch.set_num_threads(1)
    kwargs = json.loads((folder / "kwargs.json").read_text())
    make = _builtins().CifarResNet
    model_a, model_b = make(**kwargs).eval(), make(**kwargs).eval()
    model_a.load_state_dict(load_file(str(folder / "a.safetensors")), strict=False)
    model_b.load_state_dict(load_file(str(folder / "b.safetensors")), strict=False)
    x = load_file(str(folder / "x.safetensors"))["x"]
    with torch.no_grad():
        out_b = model_b(x)
    norms = {n: m for n, m in model_b.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    before = {n: (m.weight.detach().clone(), m.bias.detach().clone()) for n, m in norms.items()}
    torch.manual_seed(0)
    start = time.perf_counter()
    PermutationCoordinateDescent(model_a, model_b, x).rebasin()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        raw_gap = float((model_b(x) - out_b).abs().max())
        for n, m in norms.items():
            weight, bias = before[n]
            same = (m.weight[:, None] == weight[None]) & (m.bias[:, None] == bias[None])  # [new channel, old channel]
            if not bool((same.sum(1) == 1).all()):
                raise RuntimeError(f"{n}: rebasin's channel order cannot be read back from (weight, bias)")
            perm = same.int().argmax(1)
            m.running_mean.copy_(m.running_mean[perm])
            m.running_var.copy_(m.running_var[perm])
    save_file({k: v.contiguous() for k, v in model_b.state_dict().items() if not k.endswith("num_batches_tracked")},
              str(folder / "b_rebasin.safetensors"))
    (folder / "rebasin.json").write_text(json.dumps({"time": seconds, "raw_function_gap": raw_gap}))


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
    from wslviz.core.training import HYPERPARAMETERS
    from wslviz.scale.cache import load_zoo
    from wslviz.understand import landscape as L
    from wslviz.understand.repair import METHODS
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
        info = (folder / "rebasin.json").read_text()

    def side(other: torch.Tensor, **extra) -> dict:
        return {**extra, **{m: L.loss_barrier(L.interpolate(arch, task, a, other, repair=m)) for m in METHODS},
                "distance": float((a - other).norm()), "function_gap": equivalence_gap(arch, b, other, task.x_test)}

    start = time.perf_counter()
    ours_act = wv.activation_matching(arch, task, a, b)
    act_time = time.perf_counter() - start
    rebasin_info = json.loads(info)
    result = {
        "pair": [ia, ib], "test_acc": [float(acc.max()), float(sorted(acc)[-2])],
        "hyperparameters": [zoo.metadata.iloc[i][[c for c in HYPERPARAMETERS if c in zoo.metadata]].astype(str)
                            .to_dict() for i in (ia, ib)],
        "naive": side(b),
        "wslviz weight matching": side(ours, seconds=ours_time),
        "wslviz activation matching": side(ours_act, seconds=act_time),
        "rebasin": side(theirs, seconds=rebasin_info["time"], raw_function_gap=rebasin_info["raw_function_gap"]),
    }
    for name in ("naive", "wslviz weight matching", "wslviz activation matching", "rebasin"):
        r = result[name]
        print(f"{name:<27} barrier {r['none']:.4f}  reset {r['reset']:.4f}  REPAIR {r['repair']:.4f}  "
              f"function gap {r['function_gap']:.1e}" + (f"  time {r['seconds']:.2f} s" if "seconds" in r else ""))
    print(f"rebasin's raw output (BatchNorm buffers unpermuted): function gap {rebasin_info['raw_function_gap']:.2f}")
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
