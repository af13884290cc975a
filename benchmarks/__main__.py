"""``python -m benchmarks``: see :mod:`benchmarks._cli`."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
