"""Process settings for the long-running commands (a node, an audit).

Python's cyclic garbage collector runs a young-generation pass every 700 net allocations
of container objects and a full pass over every live object now and then.  A node
allocates a few dozen dicts and tuples per event and keeps many of them alive for a
while (the mempool, the state cache), so with the default thresholds a validator spent
about 6 µs per event collecting, half of it in full passes over its caches
(``bench/cluster.py``, measured with ``gc.callbacks``).  The ledger's own structures hold
no reference cycles that need prompt collection: a larger young generation keeps the
same memory bound in practice and takes that time out.

``LAMBTRACE_GC_THRESHOLD`` overrides the young-generation threshold (``0`` turns the
collector off; not recommended).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable

GC_THRESHOLD = 50_000
"""Young-generation threshold: net container allocations between collections."""

SWITCH_INTERVAL_S = 0.005
"""Python's default GIL switch interval, kept (larger ones did not help the benchmarks)."""


def tune_process() -> Callable[[], None]:
    """Apply the settings above to this process (after start-up imports); returns a
    function that puts the previous settings back (for a command run inside another
    program, such as the tests).

    Objects alive at this point (modules, the genesis, compiled schemas) are frozen out
    of every later collection (:func:`gc.freeze`): they live as long as the process.
    """
    before_switch, before_threshold, was_enabled = sys.getswitchinterval(), gc.get_threshold(), gc.isenabled()
    try:
        sys.setswitchinterval(float(os.environ.get("LAMBTRACE_SWITCH_S", SWITCH_INTERVAL_S)))
    except ValueError:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    raw = os.environ.get("LAMBTRACE_GC_THRESHOLD", "")
    try:
        threshold = int(raw) if raw.strip() else GC_THRESHOLD
    except ValueError:
        threshold = GC_THRESHOLD
    gc.collect()
    gc.freeze()
    if threshold <= 0:
        gc.disable()
    else:
        gc.set_threshold(threshold, *before_threshold[1:])

    def restore() -> None:
        gc.unfreeze()
        gc.set_threshold(*before_threshold)
        if was_enabled:
            gc.enable()
        sys.setswitchinterval(before_switch)

    return restore
