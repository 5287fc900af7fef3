"""Equivariant metanetworks: networks that read other networks' weights and respect their symmetries.

- :mod:`~wslviz.represent.metanet.weightspace`: weights as typed objects (edges, nodes, global), for MLPs and
  CNNs (kernel positions as channels), with every neuron set permutable (NP) or hidden ones only (HNP);
- :mod:`~wslviz.represent.metanet.layers`: the equivariant linear layer (NFN's NP layer on NP objects,
  DWSNets-style weight/bias blocks on HNP objects) and the invariant pooling head;
- :mod:`~wslviz.represent.metanet.models`: the invariant metanetwork and the flat-MLP baseline;
- :mod:`~wslviz.represent.metanet.estimator`: ``MetanetClassifier`` / ``MetanetRegressor`` with
  ``fit`` / ``predict`` / ``score``, early stopping, permutation augmentation and a progress callback.
"""
