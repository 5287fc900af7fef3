"""Weight Space Representation: features of weights, projections, property prediction, retrieval.

- :mod:`~wslviz.represent.features`: feature kinds (flat, aligned, stats, spectral, functional, learned);
- :mod:`~wslviz.represent.projection`: PCA, t-SNE, UMAP with a fit/transform ``Projector``;
- :mod:`~wslviz.represent.predict`: cross-validated property prediction and the leaderboard;
- :mod:`~wslviz.represent.retrieval`: nearest neighbours in weight space against function space;
- :mod:`~wslviz.represent.hyperrep`: hyper-representation autoencoders.

May import ``core``, ``formats`` and ``understand``.
"""
