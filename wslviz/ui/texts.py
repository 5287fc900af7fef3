"""The teaching texts: every page's explainer (the idea, what to look for, one thing to try, the
papers with links) and the glossary they point to. Plain data, rendered by :func:`wslviz.ui.teaching`
and :func:`wslviz.ui.glossary`; kept in one place so the terms are explained once, the same way."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    """A reference: how it is cited, and where to read it (None where there is no open link)."""

    cite: str
    url: str | None = None

    def markdown(self) -> str:
        return f"[{self.cite}]({self.url})" if self.url else self.cite


@dataclass(frozen=True)
class Explainer:
    """A page's "About this page" box: ``body`` (Markdown), one ``try_this`` suggestion, the papers and
    the :data:`GLOSSARY` terms the page uses."""

    title: str
    body: str
    try_this: str
    papers: tuple[Paper, ...]
    terms: tuple[str, ...] = ()


GIT_REBASIN = Paper("Ainsworth, Hayase & Srinivasa, *Git Re-Basin*, ICLR 2023", "https://arxiv.org/abs/2209.04836")
ENTEZARI = Paper("Entezari et al., *The Role of Permutation Invariance in Linear Mode Connectivity*, ICLR 2022",
                 "https://arxiv.org/abs/2110.06296")
HECHT_NIELSEN = Paper("Hecht-Nielsen, *On the algebraic structure of feedforward network weight spaces*, 1990")
GARIPOV = Paper("Garipov et al., *Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs*, NeurIPS 2018",
                "https://arxiv.org/abs/1802.10026")
LI = Paper("Li et al., *Visualizing the Loss Landscape of Neural Nets*, NeurIPS 2018", "https://arxiv.org/abs/1712.09913")
FRANKLE = Paper("Frankle et al., *Linear Mode Connectivity and the Lottery Ticket Hypothesis*, ICML 2020",
                "https://arxiv.org/abs/1912.05671")
DRAXLER = Paper("Draxler et al., *Essentially No Barriers in Neural Network Energy Landscape*, ICML 2018",
                "https://arxiv.org/abs/1803.00885")
UNTERTHINER = Paper("Unterthiner et al., *Predicting Neural Network Accuracy from Weights*, 2020",
                    "https://arxiv.org/abs/2002.11448")
MODEL_ZOOS = Paper("Schürholt et al., *Model Zoos: A Dataset of Diverse Populations of Neural Network Models*, "
                   "NeurIPS 2022", "https://arxiv.org/abs/2209.14764")
HYPER_REPS = Paper("Schürholt et al., *Self-Supervised Representation Learning on Neural Network Weights*, "
                   "NeurIPS 2021", "https://arxiv.org/abs/2110.15288")
HYPER_GEN = Paper("Schürholt et al., *Hyper-Representations as Generative Models*, NeurIPS 2022",
                  "https://arxiv.org/abs/2209.14733")
MARTIN = Paper("Martin & Mahoney, *Implicit Self-Regularization in Deep Neural Networks*, JMLR 2021",
               "https://arxiv.org/abs/1810.01075")
UMAP = Paper("McInnes et al., *UMAP*, 2018", "https://arxiv.org/abs/1802.03426")
EILERTSEN = Paper("Eilertsen et al., *Classifying the classifier: dissecting the weight space of neural networks*, "
                  "ECAI 2020", "https://arxiv.org/abs/2002.05688")
KORNBLITH = Paper("Kornblith et al., *Similarity of Neural Network Representations Revisited*, ICML 2019",
                  "https://arxiv.org/abs/1905.00414")
PDIFF = Paper("Wang et al., *Neural Network Diffusion* (p-diff), 2024", "https://arxiv.org/abs/2402.13144")
MOTHER = Paper("Horwitz, Shul & Hoshen, *Unsupervised Model Tree Heritage Recovery* (MoTHer), ICLR 2025",
               "https://arxiv.org/abs/2405.18432")
YIN = Paper("Yin et al., *Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion*, CVPR 2020",
            "https://arxiv.org/abs/1912.08795")
HINTON = Paper("Hinton, Vinyals & Dean, *Distilling the Knowledge in a Neural Network*, 2015",
               "https://arxiv.org/abs/1503.02531")
HAIM = Paper("Haim et al., *Reconstructing Training Data from Trained Neural Networks*, NeurIPS 2022",
             "https://arxiv.org/abs/2206.07758")
ZENG = Paper("Zeng et al., *Generative Modeling of Weights: Generalization or Memorization?*, 2025")

GLOSSARY: dict[str, str] = {
    "model zoo": "A population of trained networks of one architecture, varied in seed and hyper-parameters and "
                 "saved at several epochs: one row per checkpoint, one column per weight.",
    "checkpoint": "The weights of one model at one epoch. Epoch 0 is the untrained initialisation.",
    "weight-space symmetry": "A change of the weights that leaves the function unchanged: reordering hidden units "
                             "(permutation), rescaling a ReLU unit's incoming weights by s > 0 and its outgoing "
                             "weights by 1/s, flipping the sign of a tanh unit on both sides.",
    "alignment": "Re-expressing model B in model A's basis by the symmetry that brings B's weights closest to A's "
                 "(weight matching) or B's hidden activations most in line with A's (activation matching). "
                 "B's function does not change.",
    "loss barrier": "How far the loss rises above the straight chord between two models on the straight path "
                    "between them: $B(\\theta_A, \\theta_B) = \\max_{t \\in [0, 1]} \\; L((1-t)\\,\\theta_A + "
                    "t\\,\\theta_B) - \\big((1-t)\\,L(\\theta_A) + t\\,L(\\theta_B)\\big)$, measured on the same 25 "
                    "evenly spaced values of t on every page. 0 means the models are linearly mode-connected.",
    "filter normalisation": "Li et al. 2018: a random direction in weight space is rescaled filter by filter (a "
                            "conv output channel, or a linear unit's incoming weights) to the norm of the model's "
                            "own filter, so that a step of 1 moves every filter by its own size and landscapes of "
                            "models with different weight scales can be compared.",
    "Kendall τ": "Rank agreement between predicted and true values: the fraction of pairs of models ordered the "
                 "same way minus the fraction ordered the other way (1: same ranking, 0: unrelated).",
    "R²": "1 minus the squared prediction error relative to the variance of the target (1: perfect, 0: no better "
          "than predicting the mean, negative: worse).",
    "grouped cross-validation": "Folds that keep all checkpoints of one training run together, so a predictor "
                                "is never tested on a model whose other epochs it has seen.",
    "precision@k": "Of a model's k nearest neighbours in a feature space, the fraction that are also among its k "
                   "nearest neighbours in function space (similar predictions on test inputs).",
    "noise baseline": "Zoo models plus Gaussian noise, as noisy as possible while keeping the generator's mean "
                      "accuracy: a generator is new only if it is farther from the zoo than this at equal accuracy.",
}

EXPLAINERS: dict[str, Explainer] = {
    "zoo": Explainer(
        "a model zoo",
        "A **model zoo** is a population of trained networks with the same architecture, trained with varied seeds "
        "and hyper-parameters and saved at several epochs. Treating it as a data set (one row per checkpoint, one "
        "column per weight) is the starting point of weight space learning.\n\n"
        "**What to look for:** how far the hyper-parameters spread the final accuracy (the curves and the box "
        "plot), which models never learn, how weight distributions widen during training, and how a few leading "
        "singular values of each weight matrix grow above the random-initialisation bulk.\n\n"
        "Select rows in the table to make them the current selection: the other pages start from it.",
        "Colour the curves by learning rate and switch *raw curves* on: the band of the largest learning rate is "
        "the first to rise, and sometimes the first to collapse.",
        (MODEL_ZOOS, UNTERTHINER, MARTIN),
        ("model zoo", "checkpoint"),
    ),
    "projections": Explainer(
        "maps of weight space",
        "Every checkpoint becomes one row of **features** (its raw weights, weights aligned to a reference model, "
        "per-layer weight statistics, singular-value summaries, its outputs on probe inputs, or a learned "
        "embedding), standardised and projected to 2D or 3D by **PCA** (linear, fast), **t-SNE** or **UMAP** "
        "(non-linear: neighbourhoods are kept, distances between clusters are not).\n\n"
        "**What to look for:** with raw weights, models of different seeds scatter with no relation to how well "
        "they work, because hidden units can be permuted freely; after alignment, or with symmetry-invariant "
        "features (statistics, probe outputs), the map orders models by accuracy and by hyper-parameter. Drag a "
        "box or lasso to select checkpoints: they become the selection on the other pages.",
        "Compare `flat` and `stats` features coloured by test accuracy, then switch *naive vs aligned* on: does "
        "alignment alone turn this zoo's cloud into an ordered map, or do only the invariant features order it?",
        (UNTERTHINER, HYPER_REPS, GIT_REBASIN, UMAP),
        ("alignment", "weight-space symmetry"),
    ),
    "symmetry": Explainer(
        "weight-space symmetries",
        "Two networks can have very different weights and compute exactly the same function. Reordering the "
        "hidden units of a layer (and the inputs of the next layer with them) changes nothing; nor does "
        "multiplying a ReLU unit's incoming weights by any `s > 0` and dividing its outgoing weights by `s`, or "
        "flipping the sign of a tanh unit on both sides. A layer of `n` units alone has `n!` orderings, so every "
        "trained network has astronomically many equivalent copies scattered through weight space.\n\n"
        "**What to look for:** on the first tab, the weight distance is large while the output difference is at "
        "float rounding; on the second, the matching undoes the arbitrary unit order of two independent training "
        "runs; on the third, how much the distances in a zoo shrink once every model is expressed in one "
        "reference basis.",
        "On *spirals-tanh*, align two models with *permutations only*, then with *permutations + scale/sign*: "
        "undoing sign flips as well brings them closer still, and the function never changes.",
        (HECHT_NIELSEN, GIT_REBASIN, ENTEZARI),
        ("weight-space symmetry", "alignment", "loss barrier"),
    ),
    "landscape": Explainer(
        "loss landscapes and mode connectivity",
        "Every network is a point in weight space; its **loss landscape** is the loss as a function of that point. "
        "We can only look at it along lines and planes.\n\n"
        "* **Paths.** Walk the straight line `(1 - t) A + t B` between two trained models. Between independently "
        "trained networks the loss usually rises in the middle: a **loss barrier** (the largest rise above the "
        "straight chord between the two end losses; see the glossary for the formula). Much of it is an artefact "
        "of **permutation symmetry**: two training runs end with their hidden units in different orders. "
        "Re-expressing B in A's basis (weight or activation matching) before interpolating makes the barrier "
        "shrink or vanish: the two solutions sit in one *linearly connected* basin modulo permutations.\n"
        "* **Barrier matrix.** The same for every pair of a set of models, before and after alignment.\n"
        "* **Plane through three models** (Garipov et al.): low-loss regions between the stars show whether the "
        "models share a basin; compare the naive plane with the plane after aligning B and C to A.\n"
        "* **Random directions** (Li et al.): the loss around one model along two random filter-normalised "
        "directions, so sharpness is comparable between models despite scale symmetries.\n"
        "* **Trajectory**: a model's checkpoints projected on the two main directions of its own training path, "
        "over the loss on that plane.\n"
        "* **Curved path** (Garipov et al.; Draxler et al.): a quadratic Bezier curve with a trained middle point "
        "usually finds a low-loss path where the straight line crosses a barrier, even without alignment.\n\n"
        "**What to look for:** the red naive barrier against the green aligned one; whether the stars lie in one "
        "valley; how flat the minimum is along random directions.",
        "Pick two final checkpoints of different seeds as A and B and compute the paths: the naive barrier is "
        "usually several times the weight-matched one. Then train the curved path without alignment.",
        (GARIPOV, LI, FRANKLE, ENTEZARI, GIT_REBASIN, DRAXLER),
        ("loss barrier", "alignment", "filter normalisation"),
    ),
    "predict": Explainer(
        "reading properties off the weights",
        "Can we tell how good a network is **without running it**, just from its weights? Each checkpoint's "
        "features (see Projections) go into a regressor or classifier, scored by **grouped cross-validation**: all "
        "checkpoints of one training run sit in the same fold, so the predictor never sees an earlier epoch of the "
        "very model it is tested on.\n\n"
        "**What to look for:** simple per-layer statistics of the weights (mean, spread, quantiles) predict test "
        "accuracy remarkably well with gradient-boosted trees, while the raw weight vector does poorly (it is "
        "scrambled by permutation symmetry). The importance bars show which statistics matter. Below, "
        "**retrieval** asks whether models that are close in a feature space also behave alike.",
        "Fit gradient boosting on `stats` features, then on `flat`: compare Kendall τ. Then query a model under "
        "*Similar models* and read the epochs of its neighbours.",
        (UNTERTHINER, EILERTSEN, MODEL_ZOOS, KORNBLITH),
        ("grouped cross-validation", "R²", "Kendall τ", "precision@k"),
    ),
    "generate": Explainer(
        "weight generation",
        "Weight space *generation* asks whether new working networks can be sampled instead of trained. The "
        "simplest generators walk between checkpoints (interpolation, or merging after permutation alignment). "
        "Learned generators fit a density to the zoo's aligned weights: a Gaussian or kernel density in PCA space, "
        "a kernel density in the latent space of a *hyper-representation* autoencoder, a conditional VAE that maps "
        "a target accuracy to weights, or a small diffusion model over weight latents in the spirit of *p-diff*.\n\n"
        "**What to look for.** High accuracy alone proves little: weight generators often *memorise* their "
        "training checkpoints, returning near copies. So every generated model is aligned to a common reference "
        "and compared with its nearest zoo checkpoint (distance, prediction agreement), next to a **noise "
        "baseline**: zoo models plus Gaussian noise, as noisy as possible at the same accuracy. A generator "
        "produces something new only if its models lie farther from the zoo than the noise baseline at equal or "
        "better accuracy.",
        "Run *Gaussian in PCA space* at temperature 1, then at 0.3: accuracy rises as the samples huddle around "
        "the zoo, and the verdict against the noise baseline tells whether anything new is left.",
        (GIT_REBASIN, HYPER_GEN, PDIFF, ZENG),
        ("alignment", "noise baseline"),
    ),
    "lineage": Explainer(
        "model lineage",
        "Which checkpoint was fine-tuned from which? A fine-tune starts from its parent's weights and moves a "
        "little, so relatives stay close while independently trained models are far apart: **families** are the "
        "groups that the distances separate. Inside a family the nearest relative is not always the parent (two "
        "fine-tunes of one model can be closer to each other than to it), so the tree also needs a **direction**: "
        "training moves one statistic of the weights steadily. MoTHer's is the **kurtosis** of the weights, how "
        "heavy the tails of their distribution are: outliers grow while a model learns broadly and shrink while it "
        "specialises, so each family's tree must run one way in kurtosis. The tree is then the cheapest set of "
        "parent links (a minimum directed spanning tree) that points that way.\n\n"
        "**What to look for:** families as separate trees; each edge's confidence (how much better the chosen "
        "parent is than the next candidate); with a `parent` column, the wrong edges in red and the true ones "
        "that were missed, dotted.",
        "Open `digits-lineage` (three roots, their fine-tunes and the fine-tunes of those) and compare the "
        "direction scores: kurtosis against centrality against none.",
        (MOTHER,),
        ("model zoo", "checkpoint"),
    ),
    "reconstruct": Explainer(
        "data-free reconstruction",
        "Weights are data, and they remember data. A network with BatchNorm keeps, in every BatchNorm layer, the "
        "running mean and variance of the features its training data produced there: the data's moments, stored "
        "in the checkpoint. **DeepInversion** starts from noise and optimises a batch of inputs until the network "
        "calls each one the class asked for *and* every BatchNorm layer sees the statistics it recorded, with a "
        "smoothness prior. What comes out looks like the training data, recovered from the weights alone.\n\n"
        "**What to look for:** inverted inputs beside their nearest real training example (compared as patterns: "
        "each standardised); then the honest test: a fresh student trained only on the inverted inputs (the "
        "teacher's softened outputs on them, no labels, no real data), scored on the real test split, against a "
        "student trained the same way on noise. A network without BatchNorm keeps no such statistics, and the page "
        "says so.\n\n"
        "**Training examples from the margin conditions** need no BatchNorm but a *homogeneous* network: bias-free "
        "linear and convolution layers with ReLUs, so that scaling the weights scales the outputs. Trained long "
        "enough, such a network's weights are a non-negative combination of its gradients at the training examples "
        "that sit on the margin (the KKT conditions of the max-margin problem that gradient descent solves "
        "implicitly). Candidates and multipliers optimised until that combination gives the weights back land, "
        "some of them, on actual training examples, up to a positive factor: only their direction is pinned down. "
        "Small training sets and long training leak the most; a bias, a normalisation or a smooth activation "
        "breaks the conditions, and the page says which layer does.",
        "Open `digits-resnet`, invert the best checkpoint with 8 inputs per class, then distil a student from "
        "them: compare it with the student distilled from noise.",
        (YIN, HINTON, HAIM),
        ("checkpoint",),
    ),
    "train": Explainer(
        "training a zoo",
        "A zoo is made by training many small networks that differ in seed and hyper-parameters. Here every model "
        "trains at once: all weights sit in one matrix `[models, parameters]`, one step computes every model's "
        "gradient on its own minibatch in a single batched forward and backward pass.\n\n"
        "**What to look for:** the live curves fan out by learning rate; a large weight decay holds accuracy back; "
        "different seeds of the same setting end close in accuracy but far apart in weight space (see Symmetry).",
        "Train 64 moons MLPs over learning rates 0.003 to 0.3, then open Landscape: models of the largest learning "
        "rate often sit in flatter basins.",
        (MODEL_ZOOS,),
        ("model zoo", "checkpoint"),
    ),
}

NOTES: dict[str, str] = {
    "activation worse than naive":
        "**Why activation matching can lose to the naive path here.** Activation matching pairs units whose "
        "*activations* correlate on training inputs; it never looks at the weights. In a small network several "
        "pairings correlate almost equally well (and dead ReLU units correlate with nothing), so the pairing it "
        "picks can leave B's weights no closer to A's than B as trained, and the straight line then crosses "
        "higher loss. Weight matching minimises the weight distance itself, which is what the straight path "
        "responds to.",
    "matching matrix":
        "**Matching matrix.** Cell (j, k) is the cosine similarity between unit j of A and unit k of B, comparing "
        "their incoming weights with every other layer already aligned. Weight matching solves a linear "
        "assignment problem per layer and repeats over the layers until nothing improves (Git Re-Basin, "
        "Algorithm 1). The black squares are the chosen partners; they form a permutation matrix, because a unit "
        "can only be renamed, never duplicated.",
}
