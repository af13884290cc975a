"""
Optional integrations, each needing an extra: the core never imports them.

- :mod:`tunnypy.contrib.prometheus`: metrics for ``prometheus-client``
  (``pip install tunnypy[prometheus]``).
- :mod:`tunnypy.contrib.dask`: a pool's workers as Dask actors, for
  ``distributed`` (``pip install tunnypy[dask]``).
"""
