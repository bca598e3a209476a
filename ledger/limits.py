"""Every size limit in one place (STYLE §11).

Every loop and queue in the node is bounded by a field of :class:`Limits`.  Nodes take
their limits from configuration; tests may shrink them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int = 16 * 1024
    """Largest canonical signed event (a log leaf)."""
    max_depth: int = 8
    """Deepest nesting of maps/lists in any decoded value."""
    max_events_per_request: int = 5_000
    max_request_bytes: int = 8 * 1024 * 1024
    max_events_per_block: int = 5_000
    max_block_bytes: int = 8 * 1024 * 1024
    """Leaf bytes in one block; a proposal (block + framing) must fit in one peer message."""
    max_mempool_events: int = 50_000
    max_message_bytes: int = 16 * 1024 * 1024
    max_sigs_per_event: int = 4
    max_list_items: int = 1_000
    """Longest list inside an event body (lambs in one shipment, labels per carcass)."""
    max_str_chars: int = 512


DEFAULT_LIMITS = Limits()
