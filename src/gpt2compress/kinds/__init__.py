"""The built-in kinds of measurement, one module each; importing this package registers them (`core.kinds`).

A kind module holds what is particular to it: how its reference is measured, how one case becomes its typed
record, its cases and tiers, and its report page. What every kind shares (paired timing, footprint,
perplexity, memory) is in `measure/`.
"""

from . import forward, generate, train, classify  # noqa: F401  (registration order: the report's order)
