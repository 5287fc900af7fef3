"""Scale: precompute per-checkpoint results of large zoos on Dask, and the caches the app reads.

- :mod:`~wslviz.scale.precompute`: the Dask run (chunks, resuming, merging);
- :mod:`~wslviz.scale.cache`: where caches live, ``load_zoo`` (a zoo with its cache attached), reading back.

May import every library layer below (``core`` ... ``generation``); never ``plots``, ``ui`` or ``cli``.

The names in ``__all__`` are this subpackage's face, imported from its modules; the modules are its
implementation (their own public names are documented there, for code inside wslviz and for the curious).
"""

from __future__ import annotations

from wslviz.scale.cache import CacheError, PrecomputeCache, cache_root, load_zoo, open_cache, projection_store
from wslviz.scale.precompute import PrecomputeReport, precompute_zoo

__all__ = ["CacheError", "PrecomputeCache", "PrecomputeReport", "cache_root", "load_zoo", "open_cache",
           "precompute_zoo", "projection_store"]
