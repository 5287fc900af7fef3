"""Model lineage: which checkpoint was fine-tuned from which, recovered from the weights alone.

The method of MoTHer (Horwitz, Shul & Hoshen, "Unsupervised Model Tree Heritage Recovery", ICLR 2025):

1. **Families.** Models fine-tuned from a common ancestor stay close in weight space; independently trained
   ones are far apart. The distance is MoTHer's (``"layer-max"``: the sum over weight tensors of the largest
   absolute difference), or ``"euclidean"``. Families are the connected components of the models under a
   distance threshold: single linkage, cut where the minimum spanning tree's edge lengths jump most (by at least
   :data:`FAMILY_GAP` times), or at a given ``threshold``. Where the architecture knows its symmetries every pair
   is compared after weight matching one to the other, so that a permuted copy of a model is not "far for the
   wrong reason"; then each family is aligned to its medoid, one basis for all its members, before its tree.
2. **Direction.** Training moves one statistic of the weights monotonically. MoTHer's is the kurtosis of the
   weights: its outliers grow while a model generalises (pre-training) and shrink while it specialises. Which of
   the two a family's fine-tunes did is chosen per family: the orientation whose tree is cheaper (on a tie, the
   specialising one: parents have the higher kurtosis). Other scores:
   ``"centrality"`` (a parent is central among its family: fine-tunes of one model surround it) and ``"none"``
   (an undirected tree, rooted at the family's medoid).
3. **Tree.** Within a family, the minimum directed spanning tree (Chu-Liu/Edmonds, ``networkx``) over the costs
   ``D(u, v) + penalty * [u -> v goes against the direction]``: the nearest plausible parent, pointing the right
   way. An edge's confidence is its margin to the next-best parent, ``1 - cost(chosen) / cost(runner-up)``.

Works on every layout (it needs no forward), one node per model (its final checkpoint) by default. With a
ground-truth ``parent`` column (parent's ``model_id``, empty for roots), :func:`lineage_scores` measures edge,
direction and family recovery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd
import torch
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from wslviz.core.report import Report
from wslviz.core.zoo import Zoo
from wslviz.understand.align import align_zoo

Progress = Callable[[int, int], None] | None
SCORES = ("kurtosis", "centrality", "none")
"""Direction scores (see the module docstring)."""
DISTANCES = ("layer-max", "euclidean")
"""Weight distances: MoTHer's sum over weight tensors of the largest absolute difference, or Euclidean."""
FAMILY_GAP = 3.0
"""The jump between consecutive minimum-spanning-tree edge lengths that separates families (a ratio)."""
PARENT_COLUMN = "parent"


def weight_kurtosis(arch, weights: torch.Tensor) -> np.ndarray:
    """Kurtosis ``E[(w - mean)^4] / Var(w)^2`` of each model's weight matrices and kernels pooled (``[B, P] ->
    [B]``; biases and normalisation statistics left out), MoTHer's direction statistic."""
    cols = [p.slice for p in arch.layout if p.role == "weight" and len(p.shape) > 1] or [slice(0, arch.n_params)]
    w = torch.cat([weights[:, c] for c in cols], 1).double()
    w = w - w.mean(1, keepdim=True)
    var = w.pow(2).mean(1)
    return (w.pow(4).mean(1) / var.clamp_min(1e-300).pow(2)).numpy()


def weight_distance_rows(arch, a: torch.Tensor, others: torch.Tensor, distance: str = "layer-max") -> np.ndarray:
    """Distances ``[B]`` from one model ``a`` [P] to each of ``others`` [B, P] (see :data:`DISTANCES`)."""
    diff = (others.float() - a.float()).abs_()
    if distance == "euclidean":
        return torch.linalg.vector_norm(diff, dim=1).double().numpy()
    cols = [p.slice for p in arch.layout if p.role == "weight"] or [slice(0, arch.n_params)]
    return torch.stack([diff[:, c].amax(1) for c in cols]).double().sum(0).numpy()


def distance_matrix(arch, weights: torch.Tensor, distance: str = "layer-max", aligned: bool = False, seed: int = 0,
                    progress: Progress = None) -> np.ndarray:
    """Symmetric ``[n, n]`` distances between the models ``weights`` [n, P]; with ``aligned`` every row compares
    model ``u`` with the others weight-matched to ``u`` (``n`` batched matchings; the smaller of the two
    directions is kept)."""
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; known: {', '.join(DISTANCES)}")
    n = len(weights)
    d = np.zeros((n, n))
    for u in range(n):
        others = align_zoo(arch, weights, weights[u], seed=seed) if aligned else weights
        d[u] = weight_distance_rows(arch, weights[u], others, distance)
        if progress:
            progress(u + 1, n)
    d = np.minimum(d, d.T)
    np.fill_diagonal(d, 0.0)
    return d


def family_threshold(distances: np.ndarray) -> float:
    """The distance that separates families: the geometric middle of the largest jump (ratio of at least
    :data:`FAMILY_GAP`) between consecutive minimum-spanning-tree edge lengths; infinite (one family) without one."""
    mst = minimum_spanning_tree(np.where(distances > 0, distances, 1e-300)).toarray()
    lengths = np.sort(mst[mst > 0])
    if len(lengths) < 2:
        return float("inf")
    lengths = np.maximum(lengths, 1e-12)
    ratios = lengths[1:] / lengths[:-1]
    i = int(np.argmax(ratios))
    return float(np.sqrt(lengths[i] * lengths[i + 1])) if ratios[i] >= FAMILY_GAP else float("inf")


def _costs(distances: np.ndarray, score: np.ndarray | None, sign: float) -> np.ndarray:
    """``C[u, v]``: the cost of ``u`` being ``v``'s parent: the distance, plus a penalty above every distance when
    the edge goes against the direction (``sign * (score[v] - score[u]) < 0``)."""
    cost = distances.copy()
    if score is not None:
        against = sign * (score[None, :] - score[:, None]) < 0
        cost = cost + against * (distances.max() + 1.0)
    return cost


def _tree(cost: np.ndarray, root: int | None) -> tuple[np.ndarray, float]:
    """Parent of each node (-1 for the root) of the minimum directed spanning tree of ``cost`` [n, n], and its
    total cost; with ``root``, only trees rooted there."""
    n = len(cost)
    if n == 1:
        return np.array([-1]), 0.0
    g = nx.DiGraph()
    for u in range(n):
        for v in range(n):
            if u != v and v != root:
                g.add_edge(u, v, weight=float(cost[u, v]))
    tree = nx.minimum_spanning_arborescence(g, attr="weight", preserve_attrs=True)
    parent = np.full(n, -1)
    for u, v in tree.edges:
        parent[v] = u
    return parent, float(sum(cost[parent[v], v] for v in range(n) if parent[v] >= 0))


@dataclass(frozen=True, eq=False)
class Lineage(Report):
    """The recovered forest (:func:`lineage`): one node per model, in ``rows`` order."""

    rows: np.ndarray
    """Zoo rows of the nodes (each model's final checkpoint by default)."""
    model_ids: np.ndarray
    family: np.ndarray
    """Family index per node (0, 1, ...; by size, largest first)."""
    parent: np.ndarray
    """Index (into the nodes) of each node's recovered parent, -1 for a family's root."""
    confidence: np.ndarray
    """Per node, its edge's margin to the next-best parent in [0, 1] (1: no other candidate; NaN for roots)."""
    score: str
    scores: np.ndarray
    """The direction statistic per node (NaN for ``"none"``)."""
    orientation: np.ndarray
    """Per family: +1 when parents have the lower score (it grows down the tree), -1 the higher, 0 undirected."""
    threshold: float
    aligned: bool
    distances: np.ndarray
    """``[n, n]`` weight distances between the nodes (after alignment when ``aligned``)."""

    @property
    def parent_model(self) -> np.ndarray:
        """Each node's recovered parent as a ``model_id`` (None for roots)."""
        return np.array([self.model_ids[p] if p >= 0 else None for p in self.parent], dtype=object)

    @property
    def edges(self) -> pd.DataFrame:
        """One row per recovered edge: ``child`` and ``parent`` (model ids), their rows, ``family``,
        ``distance``, ``confidence``, and both nodes' direction scores."""
        kids = np.flatnonzero(self.parent >= 0)
        par = self.parent[kids]
        return pd.DataFrame({"child": self.model_ids[kids], "parent": self.model_ids[par], "child_row": self.rows[kids],
                             "parent_row": self.rows[par], "family": self.family[kids],
                             "distance": self.distances[par, kids], "confidence": self.confidence[kids],
                             f"{self.score}_parent": self.scores[par], f"{self.score}_child": self.scores[kids]})


def family_summary(lin: Lineage) -> pd.DataFrame:
    """One row per family: ``family``, ``size``, ``root`` (its root's model id), the direction score at the root
    (``root_score``) and on average at its leaves (``leaf_score``), and ``orientation`` (see :class:`Lineage`)."""
    rows = []
    for f, sign in enumerate(lin.orientation):
        members = np.flatnonzero(lin.family == f)
        roots = members[lin.parent[members] < 0]
        leaves = np.setdiff1d(members, lin.parent[lin.parent >= 0])
        rows.append({"family": f, "size": len(members), "root": lin.model_ids[roots[0]],
                     "root_score": float(lin.scores[roots].mean()), "leaf_score": float(lin.scores[leaves].mean()),
                     "orientation": int(sign)})
    return pd.DataFrame(rows)


def synthetic_forest(n_roots: int = 3, children: int = 3, depth: int = 2, n_tensors: int = 8, width: int = 256,
                     step: float = 0.3, seed: int = 0) -> Zoo:
    """A weights-only zoo whose family tree is known, for tests and demonstrations: ``n_roots`` heavy-tailed roots
    (Student-t weights, high kurtosis), each the top of a tree in which every node has ``children`` children down
    to ``depth``; a child is its parent plus Gaussian noise of ``step`` times the weights' scale (which lowers the
    kurtosis, as specialising fine-tunes do). ``n_tensors`` weight tensors of ``width`` x ``width // 8``; metadata
    ``model_id``, ``parent`` (empty for roots), ``family``, ``depth``."""
    from wslviz.core.weights_only import WeightsOnlyLayout

    gen = torch.Generator().manual_seed(seed)
    shapes = {f"layer{i}.weight": (width, width // 8) for i in range(n_tensors)}
    arch = WeightsOnlyLayout.from_shapes(shapes)
    t = torch.distributions.StudentT(torch.tensor(4.0))
    weights, rows = [], []

    def grow(w: torch.Tensor, parent: int | None, family: int, level: int) -> None:
        rows.append({"model_id": len(rows), "parent": parent, "family": family, "depth": level})
        weights.append(w)
        me = len(rows) - 1
        if level < depth:
            for _ in range(children):
                grow(w + step * torch.randn(arch.n_params, generator=gen), me, family, level + 1)

    for f in range(n_roots):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        grow(t.sample((arch.n_params,)), None, f, 0)
    meta = pd.DataFrame(rows)
    meta["parent"] = meta["parent"].astype("Int64")
    return Zoo("synthetic-forest", meta, torch.stack(weights).float(), arch)


def _nodes(zoo: Zoo, rows: str | np.ndarray | None) -> np.ndarray:
    if rows is None or (isinstance(rows, str) and rows == "final"):
        return np.sort(zoo.final_index())
    if isinstance(rows, str) and rows == "all":
        return np.arange(zoo.n_checkpoints)
    rows = np.asarray(rows, dtype=int)
    if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= zoo.n_checkpoints)):
        raise ValueError(f"rows must be zoo rows in [0, {zoo.n_checkpoints}), 'final' or 'all'")
    return rows


def lineage(zoo: Zoo, score: str = "kurtosis", threshold: float | None = None, aligned: bool = True,
            rows: str | np.ndarray | None = "final", distance: str = "layer-max", seed: int = 0,
            progress: Progress = None) -> Lineage:
    """The recovered forest of ``zoo``'s models (MoTHer; see the module docstring): families, and within each
    a directed tree of which model was fine-tuned from which, with a confidence per edge.

    ``score``: the direction statistic, one of :data:`SCORES`. ``threshold``: the family distance (default: from
    the zoo's own distances, :func:`family_threshold`). ``aligned``: compare every pair after weight matching
    where the architecture knows its symmetries (``seed``). ``rows``: ``"final"`` (one node per model), ``"all"``
    checkpoints, or row indices. ``distance``: one of :data:`DISTANCES`. Kinds with a continuous symmetry are
    compared in its canonical form (``arch.canonical``: LoRA adapters by the SVD factors of their updates)."""
    if score not in SCORES:
        raise ValueError(f"unknown direction score {score!r}; known: {', '.join(SCORES)}")
    nodes = _nodes(zoo, rows)
    if len(nodes) == 0:
        raise ValueError("lineage needs at least one model")
    w = zoo.arch.canonical(zoo.weights[torch.as_tensor(nodes)].float())  # LoRA: comparable factors, whatever G
    use_alignment = bool(aligned and zoo.arch.knows_symmetries and len(nodes) > 1)
    d = distance_matrix(zoo.arch, w, distance, use_alignment, seed, progress)
    cut = family_threshold(d) if threshold is None else float(threshold)
    _, labels = connected_components(d <= cut, directed=False)
    order = np.argsort(-np.bincount(labels), kind="stable")  # largest family first
    family = np.argsort(order)[labels]
    if use_alignment:  # each family in one basis (its medoid's): pairwise matchings need not agree with each other
        for f in range(family.max() + 1):
            members = np.flatnonzero(family == f)
            if len(members) > 1:
                idx = torch.as_tensor(members)
                medoid = members[np.argmin(d[np.ix_(members, members)].sum(1))]
                w[idx] = align_zoo(zoo.arch, w[idx], w[medoid], seed=seed)
                d[np.ix_(members, members)] = distance_matrix(zoo.arch, w[idx], distance)
    stats = weight_kurtosis(zoo.arch, w) if score == "kurtosis" else None
    parent = np.full(len(nodes), -1)
    confidence = np.full(len(nodes), np.nan)
    orientation = np.zeros(family.max() + 1, dtype=int)
    for f in range(family.max() + 1):
        members = np.flatnonzero(family == f)
        sub = d[np.ix_(members, members)]
        best = None
        if score == "kurtosis":
            for sign in (-1.0, 1.0):  # MoTHer's fine-tuning direction first: it wins ties
                cost = _costs(sub, stats[members], sign)
                tree, total = _tree(cost, None)
                if best is None or total < best[2] - 1e-9 * abs(best[2]):
                    best = (cost, tree, total, int(sign))
        else:
            central = sub.sum(1)
            cost = _costs(sub, central, 1.0) if score == "centrality" else sub
            tree, total = _tree(cost, None if score == "centrality" else int(np.argmin(central)))
            best = (cost, tree, total, 0)
        cost, tree, _, orientation[f] = best
        for v, u in enumerate(tree):
            if u < 0:
                continue
            parent[members[v]] = members[u]
            others = np.delete(cost[:, v], [u, v])
            runner_up = others.min() if len(others) else np.inf
            confidence[members[v]] = 1.0 - cost[u, v] / runner_up if np.isfinite(runner_up) and runner_up > 0 else 1.0
    ids = zoo.model_ids[nodes]
    scores = stats if stats is not None else (d.sum(1) if score == "centrality" else np.full(len(nodes), np.nan))
    return Lineage(nodes, ids, family, parent, confidence, score, np.asarray(scores, dtype=float), orientation, cut,
                   use_alignment, d)


def true_parents(zoo: Zoo, lin: Lineage, column: str = PARENT_COLUMN) -> np.ndarray | None:
    """Each node's true parent as a node index (-1 for roots, or a parent that is not among the nodes), from the
    metadata's ``column`` (the parent's ``model_id``; empty for roots); None without that column."""
    if column not in zoo.metadata:
        return None
    truth = zoo.metadata[column].iloc[lin.rows].to_numpy()
    index = {mid: i for i, mid in enumerate(lin.model_ids)}
    return np.array([index.get(t, -1) if pd.notna(t) else -1 for t in truth])


def lineage_scores(lin: Lineage, truth: np.ndarray) -> dict[str, float]:
    """How well ``lin`` recovers the true parents ``truth`` (node indices, -1 for roots; :func:`true_parents`):
    ``edge_accuracy`` (nodes with a true parent whose recovered parent is it), ``direction_accuracy`` (recovered
    edges that are true edges up to direction, pointing the right way), ``families_exact`` (1.0 when the
    recovered families are the true trees' components), ``roots_found`` (true roots recovered as roots)."""
    kids = np.flatnonzero(truth >= 0)
    edge = float(np.mean(lin.parent[kids] == truth[kids])) if len(kids) else float("nan")
    true_edges = {(int(truth[v]), int(v)) for v in kids}
    undirected = [(int(lin.parent[v]), int(v)) for v in np.flatnonzero(lin.parent >= 0)
                  if (int(lin.parent[v]), int(v)) in true_edges or (int(v), int(lin.parent[v])) in true_edges]
    direction = float(np.mean([e in true_edges for e in undirected])) if undirected else float("nan")
    g = nx.Graph()
    g.add_nodes_from(range(len(truth)))
    g.add_edges_from((int(truth[v]), int(v)) for v in kids)
    true_family = {v: i for i, comp in enumerate(nx.connected_components(g)) for v in comp}
    pairs = {(true_family[a] == true_family[b]) == (lin.family[a] == lin.family[b])
             for a in range(len(truth)) for b in range(a + 1, len(truth))}
    roots = np.flatnonzero(truth < 0)
    return {"edge_accuracy": edge, "direction_accuracy": direction, "families_exact": float(pairs <= {True}),
            "roots_found": float(np.mean(lin.parent[roots] < 0)) if len(roots) else float("nan")}


def nearest_parent_baseline(lin: Lineage) -> np.ndarray:
    """Baseline: each node's parent is its nearest other node in its family (-1 for singletons)."""
    d = lin.distances + np.where(lin.family[:, None] == lin.family[None, :], 0.0, np.inf)
    np.fill_diagonal(d, np.inf)
    return np.where(np.isfinite(d.min(0)), d.argmin(0), -1)


def rooted_mst_baseline(lin: Lineage, roots: np.ndarray) -> np.ndarray:
    """Baseline: the undirected minimum spanning tree of each family, oriented away from its given root
    (``roots``: node indices, one per family; a family without one is rooted at its medoid)."""
    parent = np.full(len(lin.rows), -1)
    for f in range(lin.family.max() + 1):
        members = np.flatnonzero(lin.family == f)
        given = [r for r in roots if lin.family[r] == f]
        sub = lin.distances[np.ix_(members, members)]
        root = int(np.flatnonzero(members == given[0])[0]) if given else int(np.argmin(sub.sum(1)))
        tree = nx.minimum_spanning_tree(nx.from_numpy_array(np.where(sub > 0, sub, 1e-300)))
        for u, v in nx.bfs_edges(tree, root):
            parent[members[v]] = members[u]
    return parent


__all__ = ["DISTANCES", "FAMILY_GAP", "PARENT_COLUMN", "SCORES", "Lineage", "distance_matrix", "family_summary",
           "family_threshold", "lineage", "lineage_scores", "nearest_parent_baseline", "rooted_mst_baseline",
           "synthetic_forest", "true_parents", "weight_distance_rows", "weight_kurtosis"]
