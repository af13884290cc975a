"""
Optional integrations, each needing an extra: the core never imports them.

- :mod:`tunnypy.contrib.prometheus`: metrics for ``prometheus-client``
  (``pip install tunnypy[prometheus]``).
"""
