"""Scale: precompute per-checkpoint results of large zoos on Dask, and the caches the app reads.

- :mod:`~wslviz.scale.precompute`: the Dask run (chunks, resuming, merging);
- :mod:`~wslviz.scale.cache`: where caches live, ``load_zoo`` (a zoo with its cache attached), reading back.

May import every library layer below (``core`` ... ``generation``); never ``plots``, ``ui`` or ``cli``.
"""
