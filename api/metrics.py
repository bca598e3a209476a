"""``/metrics`` in the Prometheus text exposition format 0.0.4, written by hand.

Each family gets ``# HELP`` and ``# TYPE`` lines, then samples ``name{labels} value``.
Counters come from the node's :class:`~node.node.Metrics` and the signature cache
(since the process started) and from the app's HTTP counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from node.node import Node

    from .runtime import HttpCounters

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float | int]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if labels:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{name}{{{inner}}} {value}")
        else:
            lines.append(f"{name} {value}")
    return lines


def render(node: Node, http: HttpCounters, role: str, consensus: dict[str, Any] | None = None) -> str:
    """The whole exposition text (ends with a newline).  ``consensus`` is a networked
    node's consensus status (``/v1/status``'s ``transport``, ``replica``, ``connected``)."""
    m = node.metrics
    header = node.store.last_header
    out: list[str] = []
    out += _family(
        "lambtrace_info", "gauge", "Constant 1, labelled with the chain, node and role.",
        [({"chain": node.genesis.chain, "node": node.name, "role": role}, 1)],
    )
    out += _family("lambtrace_height", "gauge", "Height of the last committed block.",
                   [({}, header.height if header else 0)])
    out += _family("lambtrace_log_size", "gauge", "Leaves in the committed log.",
                   [({}, header.log_size if header else 0)])
    out += _family("lambtrace_mempool_events", "gauge", "Admitted events waiting for a block.",
                   [({}, node.mempool_size)])
    out += _family("lambtrace_events_submitted_total", "counter", "Events submitted to this node.",
                   [({}, m.submitted)])
    out += _family("lambtrace_events_accepted_total", "counter", "Events admitted to the mempool.",
                   [({}, m.accepted)])
    out += _family("lambtrace_events_duplicate_total", "counter", "Events submitted again.",
                   [({}, m.duplicates)])
    out += _family("lambtrace_events_rejected_total", "counter", "Events refused, by rejection code.",
                   [({"code": code}, n) for code, n in sorted(dict(m.rejected).items())])
    out += _family("lambtrace_blocks_total", "counter", "Blocks this node committed since it started.",
                   [({}, m.blocks)])
    out += _family("lambtrace_committed_events_total", "counter", "Events this node committed since it started.",
                   [({}, m.committed_events)])
    out += _family("lambtrace_last_block_ms", "gauge", "Milliseconds the last block took to build and write.",
                   [({}, round(m.last_block_ms, 3))])
    out += _family("lambtrace_sigcache_hits_total", "counter", "Signature verifications answered from the cache.",
                   [({}, node.sigcache.hits)])
    out += _family("lambtrace_sigcache_misses_total", "counter", "Signature verifications done in full.",
                   [({}, node.sigcache.misses)])
    out += _family("lambtrace_sig_jobs_total", "counter", "Signatures handed to the verification workers.",
                   [({}, m.sig_jobs)])
    out += _family("lambtrace_sig_worker_renewals_total", "counter",
                   "Times the verification workers were replaced after one died.", [({}, node.pool_renewals)])
    out += _family("lambtrace_events_reexecuted_total", "counter",
                   "Events whose rules ran again (a block in another order than this mempool's, a recheck).",
                   [({}, m.reexecuted)])
    out += _family(
        "lambtrace_http_requests_total", "counter", "HTTP requests served, by route, method and status.",
        [
            ({"route": route, "method": method, "status": str(status)}, n)
            for (route, method, status), n in sorted(http.snapshot().items())
        ],
    )
    if consensus is not None:
        out += _consensus(consensus)
    return "\n".join(out) + "\n"


def _consensus(st: dict[str, Any]) -> list[str]:
    """The peer transport's and the replica's counters (what ``/v1/status`` shows)."""
    replica = st.get("replica") or {}
    out = _family("lambtrace_peers_connected", "gauge", "Peers with an authenticated link to this node.",
                  [({}, len(st.get("connected") or ()))])
    out += _family("lambtrace_transport_total", "counter",
                   "Peer transport counters: frames and bytes, handshakes, reconnects and drops, by stat.",
                   [({"stat": k}, n) for k, n in sorted((st.get("transport") or {}).items())])
    out += _family("lambtrace_consensus_dropped_total", "counter",
                   "Consensus messages dropped, by reason (bad_signature, malformed, wrong_chain, ...).",
                   [({"reason": k}, n) for k, n in sorted((replica.get("dropped") or {}).items())])
    out += _family("lambtrace_consensus_late_rounds_total", "counter", "Consensus rounds beyond the first.",
                   [({}, replica.get("late_rounds", 0))])
    out += _family("lambtrace_blocks_synced_total", "counter", "Blocks applied from peers by block sync.",
                   [({}, replica.get("synced", 0))])
    out += _family("lambtrace_consensus_equivocations_total", "counter",
                   "Second, conflicting votes and proposals from one validator for one step.",
                   [({}, replica.get("equivocations", 0))])
    return out
