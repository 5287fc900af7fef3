"""Weight matching at the size people hold: two GPT-2-small checkpoints (124M parameters, the Hugging Face layout).

No download: GPT-2-small's configuration (12 blocks of width 768, 12 heads, a 50,257-token vocabulary) is built by
``transformers`` with a fixed seed; two "fine-tunes" of it are the weights plus independent noise (0.02 of each
tensor's spread), and the second is then re-expressed by a random permutation of every group of its symmetry
(MLP units, heads and the units inside them, the residual stream: :mod:`wslviz.core.hf_families`). Measured, in one
run: building the architecture, ``weight_matching`` of the second to the first (permutations; wall time and the
process's peak resident memory), whether the matched model computes what it computed before (largest logit
difference on 8 sequences of 32 tokens, relative to the largest logit), and how much of the planted permutation
came back (the share of entries equal to the unpermuted fine-tune's).

    .venv/bin/python benchmarks/bench_align_gpt2.py        # about a minute and 7 GB on 2 cores
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

from wslviz.core.protocol import from_spec
from wslviz.understand.align import weight_matching
from wslviz.understand.symmetry import apply_symmetry, random_symmetry

RESULTS = Path(__file__).resolve().parent / "results" / "bench_align_gpt2.json"
CONFIG = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024,
          "vocab_size": 50257, "architectures": ["GPT2LMHeadModel"]}


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("needs transformers: pip install 'wslviz[hf]'", file=sys.stderr)
        return 1
    torch.set_num_threads(2)
    start = time.perf_counter()
    arch = from_spec({"kind": "hf", "config": CONFIG, "input_shape": [32]})
    built = time.perf_counter() - start
    base = arch.initial_weights()
    gen = torch.Generator().manual_seed(1)
    tuned = []
    for _ in range(2):
        w = base.clone()
        for p in arch.layout:
            part = w[p.slice]
            part += 0.02 * part.std() * torch.randn(part.shape, generator=gen)
        tuned.append(w)
    planted = apply_symmetry(arch, tuned[1][None].double(), random_symmetry(arch, seed=2, kinds=("permutation",)))
    planted = planted[0].float()
    start = time.perf_counter()
    matched = weight_matching(arch, tuned[0], planted, kinds=("permutation",))
    seconds = time.perf_counter() - start
    tokens = torch.randint(0, CONFIG["vocab_size"], (8, 32), generator=gen).float()
    with torch.no_grad():
        before = arch.model_outputs(planted[None], tokens)[0]
        after = arch.model_outputs(matched[None], tokens)[0]
    result = {"params": arch.n_params, "build_s": round(built, 2), "match_s": round(seconds, 1),
              "peak_rss_gib": round(peak_gib(), 2),
              "function_kept_rel": float((after - before).abs().max() / before.abs().max()),
              "planted_recovered": float((matched == tuned[1]).double().mean()),
              "moved_by_planting_rel": float((planted - tuned[1]).norm() / tuned[1].norm())}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
