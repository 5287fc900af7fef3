"""Is a generated model new? Distances to the zoo after alignment, agreement with it, and a noise baseline.

:func:`novelty` measures, for each generated model, the distance to the nearest zoo checkpoint after
aligning *everything to the common reference* (a symmetric copy of a zoo model is not new), and the
prediction agreement with that checkpoint. :func:`noise_baseline` perturbs zoo models with Gaussian noise
until they are as accurate as the generated ones, so a generator's novelty can be compared with the
novelty that plain noise buys at the same accuracy: weight generators often memorise or interpolate their
training checkpoints (Zeng et al. 2025, "Generative modeling of weights: generalization or
memorization?"). :func:`project_with_generated` draws generated models in the zoo's projection.

Zeng et al.'s own measure is functional: the set of test examples a model gets wrong, compared with every
zoo checkpoint's by intersection over union (``max_error_iou``: 1 = exactly the mistakes of some zoo
model; ``error_novelty = 1 - max_error_iou``). Their baseline is a **noise frontier**
(:func:`noise_frontier`): zoo models plus Gaussian noise at a sweep of amplitudes relative to each
tensor's scale, accuracy against novelty. A generator beats memorisation only where its models lie beyond
that curve, more novel at equal accuracy (:meth:`NoiseFrontier.beyond`, :func:`frontier_verdict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import decision_grid, evaluate, model_outputs
from wslviz.core.report import Report
from wslviz.core.zoo import Zoo, checkpoint_accuracies, reference_row
from wslviz.generation.export import as_zoo
from wslviz.generation.rows import align_rows, check_rows
from wslviz.represent.features import compute_features
from wslviz.represent.projection import Projector
from wslviz.understand.align import align_zoo

Progress = Callable[[int, int], None] | None


class NoveltyIndex:
    """Zoo checkpoints aligned to one common reference, to find each generated model's nearest neighbour.

    Everything (the zoo's ``rows``, default all checkpoints, and every queried model) is aligned to the
    *same* reference checkpoint (default :func:`reference_row`) by weight matching, then compared by
    Euclidean distance: a permuted copy of a zoo model has distance ~0 (exactly 0 when the matching
    recovers the permutation). Aligning each generated model to a common reference rather than to each
    candidate separately keeps the cost at one matching per model.
    """

    def __init__(self, zoo: Zoo, rows: Sequence[int] | None = None, reference: int | None = None):
        self.zoo = zoo
        self.rows = np.arange(zoo.n_checkpoints) if rows is None else check_rows(zoo, rows, "novelty")
        self.reference = reference_row(zoo) if reference is None else int(reference)

    def fit(self, progress: Progress = None) -> NoveltyIndex:
        self.aligned_ = align_rows(self.zoo, self.rows, self.reference, True, progress)
        task = self.zoo.task
        self.predictions_ = None
        if task is not None and task.is_classification:
            w = self.zoo.weights[torch.as_tensor(self.rows)].float()
            self.predictions_ = model_outputs(self.zoo.arch, w, task.x_test).argmax(-1)  # [Z, N_test]
            self.errors_ = self.predictions_ != task.y_test.view(1, -1)
        return self

    def query(self, generated: torch.Tensor, progress: Progress = None) -> pd.DataFrame:
        """One row per generated model (``generated [B, P]``): ``distance`` to the nearest aligned zoo
        checkpoint, ``relative_distance`` (divided by that checkpoint's norm), ``nearest_row`` (zoo row),
        ``nearest_model_id``, ``nearest_epoch``, ``agreement`` (fraction of test inputs on which both
        predict the same class; NaN without a classification task), ``accuracy`` and ``nearest_accuracy``;
        ``max_agreement`` / ``most_similar_row`` (the zoo checkpoint agreeing most); ``max_error_iou`` /
        ``error_iou_row`` (Zeng et al. 2025: the largest :func:`error_iou` with any zoo checkpoint's set of
        misclassified test examples, and that checkpoint) and ``error_novelty = 1 - max_error_iou``."""
        if not hasattr(self, "aligned_"):
            self.fit()
        zoo = self.zoo
        if generated.dim() != 2 or generated.shape[1] != zoo.n_params:
            raise ValueError(f"generated weights must be [B, {zoo.n_params}], got {list(generated.shape)}")
        gen = generated.float()
        ref = zoo.weights[self.reference].float()
        gen_aligned = align_zoo(zoo.arch, gen, ref, method="weight", progress=progress)
        dist = torch.cdist(gen_aligned.double(), self.aligned_.double())
        d, j = dist.min(1)
        nearest = self.rows[j.numpy()]
        norms = self.aligned_.double().norm(dim=1)[j]
        df = pd.DataFrame({
            "distance": d.numpy(),
            "relative_distance": (d / norms.clamp_min(1e-12)).numpy(),
            "nearest_row": nearest,
            "nearest_model_id": zoo.model_ids[nearest],
        })
        if "epoch" in zoo.metadata:
            df["nearest_epoch"] = zoo.metadata["epoch"].to_numpy()[nearest]
        task = zoo.task
        if self.predictions_ is not None:
            pred_g = model_outputs(zoo.arch, gen, task.x_test).argmax(-1)
            pred_z = self.predictions_[j]
            y = task.y_test.view(1, -1)
            df["agreement"] = (pred_g == pred_z).float().mean(1).numpy()
            # functional nearest neighbour: the zoo checkpoint whose predictions agree most (Zeng et al. 2025)
            step = max(1, 2**26 // max(1, self.predictions_.numel()))  # bounds the [step, Z, N] comparison
            agree = torch.cat([(pred_g[i:i + step, None] == self.predictions_[None]).float().mean(2)
                               for i in range(0, len(pred_g), step)])
            best, who = agree.max(1)
            df["max_agreement"] = best.numpy()
            df["most_similar_row"] = self.rows[who.numpy()]
            df["accuracy"] = (pred_g == y).float().mean(1).numpy()
            df["nearest_accuracy"] = (pred_z == y).float().mean(1).numpy()
            iou = error_iou(pred_g != y, self.errors_)
            best_iou, who_iou = iou.max(1)
            df["max_error_iou"] = best_iou.numpy()
            df["error_iou_row"] = self.rows[who_iou.numpy()]
            df["error_novelty"] = 1.0 - df["max_error_iou"]
        else:
            df["agreement"] = np.nan
            df["max_agreement"] = np.nan
            df["max_error_iou"] = np.nan
            df["error_novelty"] = np.nan
        return df


def error_iou(errors: torch.Tensor, zoo_errors: torch.Tensor) -> torch.Tensor:
    """Intersection over union ``[B, Z]`` of the misclassified-example sets ``errors`` [B, N] (bool) and
    ``zoo_errors`` [Z, N] (Zeng et al. 2025, Sec. 3). Two models that make no mistake at all have IoU 1
    (the same, empty, set); one without mistakes against one with has IoU 0."""
    a, b = errors.float(), zoo_errors.float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1).unsqueeze(0) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones(()))


def novelty(zoo: Zoo, generated: torch.Tensor, rows: Sequence[int] | None = None, reference: int | None = None,
            progress: Progress = None) -> pd.DataFrame:
    """Per generated model (``generated [B, P]``): distance to the nearest zoo checkpoint after aligning
    everything to a common reference, that checkpoint's row, and prediction agreement with it.

    See :class:`NoveltyIndex` for the columns and the alignment convention. ``rows``: the zoo checkpoints
    to compare with (default all, every epoch).
    """
    return NoveltyIndex(zoo, rows, reference).fit(progress).query(generated)


def noise_baseline(zoo: Zoo, n: int = 16, target_accuracy: float | None = None, seed: int = 0,
                   max_scale: float = 2.0, iterations: int = 14) -> tuple[torch.Tensor, dict[str, Any]]:
    """Zoo models plus Gaussian noise, as noisy as possible while still as accurate as ``target_accuracy``.

    Sources: final checkpoints whose test accuracy is at least ``target_accuracy`` (default: the median
    final accuracy; the best final checkpoint if none reaches it), drawn ``n`` times with replacement.
    Each tensor gets noise ``s * std(tensor) * N(0, 1)`` (relative to that layer's own weight scale). The
    scale ``s`` in ``[0, max_scale]`` is the largest whose mean test accuracy is still >= the target, found
    by bisection with fixed noise draws. Returns ``(weights [n, P], info)`` with ``scale``, ``accuracy``
    (mean) and ``source_rows``. The point: the distance from the zoo that plain noise buys at a given
    accuracy is the bar a generator must clear to claim novelty.
    """
    if zoo.task is None:
        raise ValueError("the noise baseline needs the zoo's task to measure accuracy")
    final = zoo.final_index()
    acc = checkpoint_accuracies(zoo, final)
    target = float(np.median(acc)) if target_accuracy is None else float(target_accuracy)
    ok = final[acc >= target]
    sources = ok if len(ok) else final[[int(np.argmax(acc))]]
    rng = np.random.default_rng(seed)
    src = sources[rng.integers(0, len(sources), size=n)]
    base = zoo.weights[torch.as_tensor(src)].float()
    noise = relative_noise(zoo.arch, base, seed)  # every layer perturbed in proportion to its own scale

    def mean_acc(s: float) -> float:
        return float(evaluate(zoo.arch, zoo.task, base + s * noise)["accuracy"].mean())

    lo, hi = 0.0, float(max_scale)
    if mean_acc(hi) >= target:
        lo = hi
    else:
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if mean_acc(mid) >= target else (lo, mid)
    weights = base + lo * noise
    return weights, {"scale": lo, "accuracy": mean_acc(lo), "target_accuracy": target, "source_rows": src}


def relative_noise(arch, weights: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Gaussian noise ``[B, P]`` with each trained tensor's entries scaled by that tensor's own standard
    deviation in that model (its absolute value for one-entry tensors); zero on running statistics."""
    noise = torch.randn(weights.shape, generator=torch.Generator().manual_seed(seed))
    base = weights.float()
    for p in arch.layout:
        if p.trainable:
            noise[:, p.slice] *= base[:, p.slice].std(1, keepdim=True, unbiased=False) if p.numel > 1 else \
                base[:, p.slice].abs()
        else:
            noise[:, p.slice] = 0.0
    return noise


NOISE_AMPLITUDES = (0.0, 0.02, 0.04, 0.06, 0.09, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0)
"""Noise amplitudes of the frontier, relative to each tensor's standard deviation (Zeng et al. 2025 show
0.06 and 0.12 in their setup; the sweep runs on until accuracy collapses)."""


@dataclass
class NoiseFrontier:
    """Zoo models plus relative Gaussian noise at each amplitude (see :func:`noise_frontier`).

    ``points``: one row per noisy model (``amplitude``, ``source_row``, and the :meth:`NoveltyIndex.query`
    columns ``accuracy``, ``distance``, ``error_novelty``, ...); ``curve``: per source model and amplitude
    the means of ``accuracy``, ``distance`` and ``error_novelty`` over the noise draws (one curve per
    source; a curve without a ``source_row`` column is one source).
    """

    points: pd.DataFrame
    curve: pd.DataFrame

    def _curves(self) -> list[pd.DataFrame]:
        if "source_row" not in self.curve:
            return [self.curve]
        return [c for _, c in self.curve.groupby("source_row", sort=True)]

    def envelope(self, novelty: np.ndarray, measure: str = "error_novelty") -> np.ndarray:
        """The frontier's accuracy at each ``novelty`` (``measure``: ``error_novelty`` or ``distance``): the
        best accuracy that noise on any single source model reaches at that novelty or more. Per source, the
        upper envelope of its curve (linear between its points, flat beyond its ends); then the maximum over
        the sources."""
        novelty = np.asarray(novelty, dtype=float)
        out = np.full(novelty.shape, -np.inf)
        for c in self._curves():
            c = c.sort_values(measure)
            y = np.maximum.accumulate(c["accuracy"].to_numpy(float)[::-1])[::-1]
            out = np.maximum(out, np.interp(novelty, c[measure].to_numpy(float), y))
        return out

    def line(self, measure: str = "error_novelty") -> pd.DataFrame:
        """The frontier as a drawable line: :meth:`envelope` at every novelty the curves reach
        (columns ``measure`` and ``accuracy``)."""
        x = np.unique(self.curve[measure].to_numpy(float))
        return pd.DataFrame({measure: x, "accuracy": self.envelope(x, measure)})

    def beyond(self, novelty: np.ndarray, accuracy: np.ndarray, measure: str = "error_novelty") -> np.ndarray:
        """Whether each point (``novelty``, ``accuracy``) lies beyond the frontier: more accurate than noise
        gets at that novelty (equivalently, more novel than noise at that accuracy). A point with novelty 0
        repeats a zoo model (its mistakes exactly, or its weights) and is never beyond."""
        novelty = np.asarray(novelty, dtype=float)
        return (novelty > 0) & (np.asarray(accuracy, dtype=float) > self.envelope(novelty, measure))


def noise_frontier(zoo: Zoo, index: NoveltyIndex | None = None, amplitudes: Sequence[float] = NOISE_AMPLITUDES,
                   n_sources: int = 8, n_draws: int = 4, seed: int = 0, progress: Progress = None) -> NoiseFrontier:
    """The memorisation baseline of Zeng et al. (2025) as a curve: each of the ``n_sources`` most accurate
    final checkpoints plus Gaussian noise at every amplitude (:func:`relative_noise`; ``n_draws`` fixed draws
    per source, scaled by the amplitude), each noisy model measured with ``index`` (default a fresh
    :class:`NoveltyIndex` over every checkpoint) for accuracy, L2 novelty and error-IoU novelty.

    The frontier (:meth:`NoiseFrontier.envelope`) is the best that noise on any *single* one of the zoo's
    best models reaches, so a generator that only copies or perturbs good zoo models cannot pass it.
    """
    if zoo.task is None:
        raise ValueError("the noise frontier needs the zoo's task to measure accuracy")
    index = index if index is not None else NoveltyIndex(zoo).fit()
    final = zoo.final_index()
    src = final[np.argsort(-checkpoint_accuracies(zoo, final), kind="stable")][:n_sources]
    src = np.repeat(src, n_draws)
    base = zoo.weights[torch.as_tensor(src)].float()
    noise = relative_noise(zoo.arch, base, seed)
    amps = [float(a) for a in amplitudes]
    weights = torch.cat([base + a * noise for a in amps])
    points = index.query(weights, progress=progress)
    points.insert(0, "amplitude", np.repeat(amps, len(src)))
    points.insert(1, "source_row", np.tile(src, len(amps)))
    cols = ["accuracy", "distance", "error_novelty"]
    curve = points.groupby(["source_row", "amplitude"], sort=True)[cols].mean().reset_index()
    return NoiseFrontier(points=points, curve=curve)


def frontier_verdict(frontier: NoiseFrontier, novelty_df: pd.DataFrame, zoo_final_median: float) -> dict[str, Any]:
    """Where one generator's models (``novelty_df``: :meth:`NoveltyIndex.query` rows) lie against the frontier.

    Returns ``accuracy``, ``distance``, ``error_novelty`` (means), ``beyond`` (the mean point lies beyond the
    error-IoU frontier), ``beyond_l2`` (the same against the L2 frontier), ``share_beyond`` (share of the
    models beyond the error-IoU frontier), ``margin`` (mean accuracy minus the frontier's accuracy at the
    mean novelty), ``meets_median`` (mean accuracy >= the zoo's median final accuracy) and ``done``
    (``beyond`` and ``meets_median``: good *and* not memorised).
    """
    acc, nov = float(novelty_df["accuracy"].mean()), float(novelty_df["error_novelty"].mean())
    dist = float(novelty_df["distance"].mean())
    out = {"accuracy": acc, "distance": dist, "error_novelty": nov,
           "beyond": bool(frontier.beyond([nov], [acc])[0]),
           "beyond_l2": bool(frontier.beyond([dist], [acc], "distance")[0]),
           "share_beyond": float(frontier.beyond(novelty_df["error_novelty"], novelty_df["accuracy"]).mean()),
           "margin": acc - float(frontier.envelope([nov])[0]),
           "meets_median": acc >= zoo_final_median}
    out["done"] = bool(out["beyond"] and out["meets_median"])
    return out


def frontier_statement(verdicts: dict[str, dict[str, Any]], zoo_final_median: float) -> str:
    """One plain sentence on whether any generator beats the noise frontier at the zoo's median accuracy;
    when none does, which comes closest (largest margin among those at the median, else the most accurate)."""
    if not verdicts:
        return "No generator has been run yet."
    done = [m for m, v in verdicts.items() if v["done"]]
    if done:
        return (f"Beyond the noise frontier with mean accuracy at or above the zoo's median final accuracy "
                f"({zoo_final_median:.3f}): {', '.join(done)}.")
    beyond = [m for m, v in verdicts.items() if v["beyond"]]
    at_median = {m: v for m, v in verdicts.items() if v["meets_median"]}
    if at_median:
        m, v = max(at_median.items(), key=lambda kv: kv[1]["margin"])
        close = f"closest: {m}, {-v['margin']:.3f} accuracy below the frontier at its novelty"
    else:
        m, v = max(verdicts.items(), key=lambda kv: kv[1]["accuracy"])
        close = f"closest: {m}, mean accuracy {v['accuracy']:.3f} vs the median {zoo_final_median:.3f}"
    also = f" ({', '.join(beyond)} beyond the frontier but below the median accuracy)" if beyond else ""
    return f"No generator beats the noise frontier at the zoo's median accuracy{also}; {close}."


@dataclass(frozen=True, eq=False)
class BaselineComparison(Report):
    """Generated models next to the noise baseline at the same accuracy (:func:`compare_with_baseline`)."""

    accuracy: float
    zoo_final_median: float
    distance: float
    agreement: float
    max_agreement: float
    baseline_distance: float
    baseline_agreement: float
    baseline_max_agreement: float
    baseline_accuracy: float
    noise_scale: float
    novelty: pd.DataFrame
    baseline_novelty: pd.DataFrame
    baseline_weights: torch.Tensor
    beats_baseline: bool
    beats_function: bool
    done: bool


def compare_with_baseline(zoo: Zoo, generated: torch.Tensor, index: NoveltyIndex | None = None, seed: int = 0,
                          progress: Progress = None) -> BaselineComparison:
    """Accuracy and novelty of ``generated [B, P]`` next to the noise baseline at the same accuracy.

    Returns a :class:`BaselineComparison` (readable by key too): ``accuracy`` (mean test accuracy of the
    generated models), ``zoo_final_median`` (median
    test accuracy of the zoo's final checkpoints), ``distance`` (mean nearest-zoo-neighbour distance),
    ``max_agreement`` (mean over generated models of the highest test-prediction agreement with any zoo
    checkpoint), the same ``baseline_*`` numbers for the noise baseline, ``noise_scale``, ``novelty`` and
    ``baseline_novelty`` (the per-model DataFrames), ``baseline_weights``, and three verdicts:

    * ``beats_baseline``: the generated models are farther from the zoo in aligned weight space than the
      noise baseline (``distance > baseline_distance``) while at least as accurate
      (``accuracy >= baseline_accuracy - 1/N_test``: one test example of slack, since the baseline is
      calibrated to the generated accuracy from above);
    * ``beats_function``: functionally less like any zoo checkpoint than the noise baseline
      (``max_agreement < baseline_max_agreement``) at the same accuracy condition;
    * ``done``: ``beats_baseline`` and ``accuracy >= zoo_final_median`` (the issue's criterion for a
      learned generator).
    """
    if zoo.task is None:
        raise ValueError("comparing with the noise baseline needs the zoo's task")
    index = index if index is not None else NoveltyIndex(zoo).fit(progress)
    gen_df = index.query(generated)
    acc = float(gen_df["accuracy"].mean())
    base_w, info = noise_baseline(zoo, n=len(generated), target_accuracy=acc, seed=seed)
    base_df = index.query(base_w)
    slack = 1.0 / len(zoo.task.y_test)
    numbers = {"accuracy": acc, "zoo_final_median": float(np.median(checkpoint_accuracies(zoo, zoo.final_index()))),
               **{f"{prefix}{k}": float(df[k].mean()) for prefix, df in (("", gen_df), ("baseline_", base_df))
                  for k in ("distance", "agreement", "max_agreement")},
               "baseline_accuracy": float(base_df["accuracy"].mean())}
    as_accurate = acc >= numbers["baseline_accuracy"] - slack
    beats = bool(numbers["distance"] > numbers["baseline_distance"] and as_accurate)
    return BaselineComparison(
        **numbers, noise_scale=info["scale"], novelty=gen_df, baseline_novelty=base_df, baseline_weights=base_w,
        beats_baseline=beats,
        beats_function=bool(numbers["max_agreement"] < numbers["baseline_max_agreement"] and as_accurate),
        done=bool(beats and acc >= numbers["zoo_final_median"]))


SUMMARY_COLUMNS = {"beats_baseline": "beats L2", "beats_function": "beats function", "accuracy": "accuracy",
                   "baseline_accuracy": "noise accuracy", "distance": "NN distance",
                   "baseline_distance": "noise NN distance", "max_agreement": "max agreement",
                   "baseline_max_agreement": "noise max agreement"}
"""The columns of :func:`summary_table`: each :func:`compare_with_baseline` number and its short name."""


def summary_table(comparisons: dict[str, dict[str, Any]], learned: Sequence[str] = ()) -> pd.DataFrame:
    """One row per generator run (``comparisons``: name -> :func:`compare_with_baseline` result) with the
    verdicts first and the generated models' numbers each beside their noise baseline's
    (:data:`SUMMARY_COLUMNS`), plus ``learned`` (the name is in ``learned``). Few, short columns: the table
    must fit a page with its verdicts visible."""
    rows = [{"generator": name, **{short: c[key] for key, short in SUMMARY_COLUMNS.items()},
             "learned": name in learned} for name, c in comparisons.items()]
    return pd.DataFrame(rows, columns=["generator", *SUMMARY_COLUMNS.values(), "learned"])


def nearest_pairs_grid(zoo: Zoo, generated: torch.Tensor, novelty_df: pd.DataFrame, n: int = 3,
                       resolution: int = 70) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Decision regions on the zoo's 2-D test inputs of the first ``n`` generated models (``generated`` [B, P]),
    each followed by its nearest zoo checkpoint (``novelty_df``: :func:`novelty`'s table of those models).
    Returns ``(xs, ys, classes [2n, R, R], titles)`` for :func:`wslviz.plots.generate.decision_boundaries`."""
    pick = np.arange(min(n, len(novelty_df)))
    nearest = novelty_df["nearest_row"].to_numpy()[pick]
    pairs = torch.stack([w for i, r in zip(pick, nearest, strict=True)
                         for w in (generated[i].float(), zoo.weights[int(r)].float())])
    xs, ys, classes = decision_grid(zoo.arch, pairs, zoo.task.x_test, resolution=resolution)
    acc, near_acc, dist = (novelty_df[c].to_numpy() for c in ("accuracy", "nearest_accuracy", "distance"))
    titles = [t for i, r in zip(pick, nearest, strict=True)
              for t in (f"generated {i} · acc {acc[i]:.3f}", f"zoo #{r} · acc {near_acc[i]:.3f} · d {dist[i]:.2f}")]
    return xs, ys, classes, titles


def project_with_generated(zoo: Zoo, generated: torch.Tensor, kind: str = "stats", method: str = "pca",
                           seed: int = 0) -> tuple[pd.DataFrame, bool]:
    """2D coordinates of the zoo's checkpoints and the generated models in one projection.

    The projector is fitted on the zoo's features (``wv.compute_features(zoo, kind)``) and the generated
    models are placed with its ``transform`` where the method has one (PCA, UMAP); otherwise (t-SNE) it
    is refitted on zoo + generated together. Returns ``(frame, refitted)``; the frame has columns
    ``x, y, source`` ("zoo" / "generated"), ``row`` (zoo row or generated index) and ``test_acc``.
    """
    gen_zoo = as_zoo(zoo, generated, method="generated")
    f_zoo = np.asarray(compute_features(zoo, kind), dtype=float)
    f_gen = np.asarray(compute_features(gen_zoo, kind), dtype=float)
    proj = Projector(method, 2, seed)
    refitted = method == "tsne"  # t-SNE has no out-of-sample mapping
    if refitted:
        both = np.asarray(proj.fit_transform(np.vstack([f_zoo, f_gen])))
        xy_zoo, xy_gen = both[: len(f_zoo)], both[len(f_zoo):]
    else:
        xy_zoo, xy_gen = np.asarray(proj.fit_transform(f_zoo)), np.asarray(proj.transform(f_gen))
    acc_zoo = zoo.metadata["test_acc"].to_numpy(dtype=float) if "test_acc" in zoo.metadata else \
        np.full(zoo.n_checkpoints, np.nan)
    acc_gen = gen_zoo.metadata["test_acc"].to_numpy(dtype=float) if "test_acc" in gen_zoo.metadata else \
        np.full(len(generated), np.nan)
    frame = pd.DataFrame({
        "x": np.concatenate([xy_zoo[:, 0], xy_gen[:, 0]]),
        "y": np.concatenate([xy_zoo[:, 1], xy_gen[:, 1]]),
        "source": ["zoo"] * len(xy_zoo) + ["generated"] * len(xy_gen),
        "row": np.concatenate([np.arange(len(xy_zoo)), np.arange(len(xy_gen))]),
        "test_acc": np.concatenate([acc_zoo, acc_gen]),
    })
    return frame, refitted
