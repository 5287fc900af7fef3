"""Weight Space Representation: features of weights, projections, property prediction, retrieval.

- :mod:`~wslviz.represent.features`: feature kinds (flat, aligned, stats, spectral, functional, learned);
- :mod:`~wslviz.represent.projection`: PCA, t-SNE, UMAP with a fit/transform ``Projector``;
- :mod:`~wslviz.represent.predict`: cross-validated property prediction and the leaderboard;
- :mod:`~wslviz.represent.retrieval`: nearest neighbours in weight space against function space;
- :mod:`~wslviz.represent.hyperrep`: hyper-representation autoencoders.

May import ``core``, ``formats`` and ``understand``.

The names in ``__all__`` are this subpackage's face, imported from its modules; the modules are its
implementation (their own public names are documented there, for code inside wslviz and for the curious).
"""

from __future__ import annotations

from wslviz.represent.features import FeatureError, FeatureSet, compute_features, feature_names, feature_set
from wslviz.represent.hyperrep import HyperRepresentation
from wslviz.represent.predict import PropertyPrediction, leaderboard, predict_property
from wslviz.represent.projection import Projector, project
from wslviz.represent.retrieval import function_similarity, nearest_neighbours, retrieval_benchmark

__all__ = ["FeatureError", "FeatureSet", "HyperRepresentation", "Projector", "PropertyPrediction",
           "compute_features", "feature_names", "feature_set", "function_similarity", "leaderboard",
           "nearest_neighbours", "predict_property", "project", "retrieval_benchmark"]
