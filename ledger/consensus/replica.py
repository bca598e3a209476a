"""One node's consensus, sans I/O: machine + signing + block validation + WAL + gossip + sync.

A :class:`Replica` is driven by three calls — :meth:`Replica.on_message`,
:meth:`Replica.on_timer` and :meth:`Replica.tick` (periodic gossip) — each given the
current time, each returning :class:`Send` and :class:`SetTimer` outputs for the
caller to carry out.  The real node calls it from its consensus thread with the TCP
transport and wall-clock timers; the simulator calls it with a simulated network and
clock.  Both run exactly this code.

Every input is appended to the write-ahead log before it is stepped, so a restarted
replica replays the inputs of its current height and reaches the same state; the
:class:`SignGuard` (persisted by the caller) refuses to sign a conflicting vote or
proposal, so a replay never double-signs.

The chain itself lives behind :class:`App`: it builds blocks from its mempool,
validates proposed blocks by executing them, commits decided blocks with their
certificates, and serves committed blocks to peers that are behind (block sync).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .. import codec
from ..blocks.certificate import CommitCertificate, verify_commit, vote_bytes
from ..errors import LedgerError, StorageError
from ..genesis import Genesis
from ..hashing import TAG_VOTE, signing_message
from ..sigs import SIGNATURE_SIZE, verify_signature
from .machine import (
    PRECOMMIT,
    PREVOTE,
    PROPOSE,
    BroadcastProposal,
    BroadcastVote,
    Decide,
    GetValue,
    Machine,
    ProposalIn,
    ScheduleTimeout,
    Start,
    TimeoutIn,
    Timeouts,
    ValidatorSet,
    ValueReady,
    VoteIn,
)

if TYPE_CHECKING:  # pragma: no cover
    from signer import Signer

STEP_RANK = {PROPOSE: 1, PREVOTE: 2, PRECOMMIT: 3}
MAX_SYNC_BATCH = 16
MAX_BAD_SIGNATURES_PER_PEER = 64
"""A peer that sent this many bad signatures or certificates at one height is not heard
again until the next: each costs a verification, and an honest peer sends none."""
LISTEN_MS = 1_000
"""How long a watching validator listens after its start before it starts a height: four
gossip ticks of a node (ADR 0014)."""
WATCH_VALUES_PER_VOTER = 8
"""While watching (ADR 0014), the values one validator's votes are tallied for at one
height: enough for an honest one over eight of this validator's turns to propose."""
MAX_INVALID_COPIES = 4
"""Copies of one signed proposal with an invalid block that one peer gets executed at a
height: an honest proposer's block may be invalid here for a while (its clock ahead of
ours) and it re-sends it every gossip tick; a faulty peer cannot use up another peer's
copies (the proposer's own). A copy with other events than its header commits to is not
the proposer's block and is dropped before this (the app gives it no value: ADR 0018)."""
MAX_EARLY_ROUNDS = 4
"""Rounds of the next height whose proposal and votes are kept while this height is
being committed."""
MAX_ROUND = 2**31
"""Rounds (and a proposal's ``valid_round``) lie below this: the bound a commit
certificate's round has (:meth:`CommitCertificate.from_dict`)."""
SYNC_BYTES_PER_S = 8 << 20
"""Block-sync replies one peer may draw, per second of the local clock (about 20,000
events/s: faster than a chain commits, so a node that is behind still catches up)."""
SYNC_BURST_BYTES = 32 << 20
"""How much of that budget one peer may save up."""
SYNC_IN_FLIGHT_MS = 500
"""A block sent to a peer this recently is not sent to it again: it is on its way (a
node that is behind asks every peer that reports a greater height, and asks again)."""


@dataclass
class _SyncBudget:
    """What one peer may still draw from block sync, and what it was last sent."""

    tokens: float
    at_ms: int
    sent_up_to: int = 0
    sent_at_ms: int = 0


def _approx_size(x: Any) -> int:
    """Roughly the encoded size of a payload (bytes, strings, containers)."""
    if isinstance(x, bytes | str):
        return len(x) + 2
    if isinstance(x, dict):
        return sum(_approx_size(k) + _approx_size(v) for k, v in x.items()) + 2
    if isinstance(x, list | tuple):
        return sum(_approx_size(v) for v in x) + 2
    return 9


# -- outputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send ``msg`` to ``to`` (a node name), or to every peer when ``to`` is None."""

    to: str | None
    msg: dict[str, Any]


@dataclass(frozen=True)
class SetTimer:
    key: tuple[str, int, int]
    at_ms: int


Out = Send | SetTimer


# -- what the replica needs from its surroundings ---------------------------------------


class App(Protocol):
    """The chain as consensus sees it.  ``payload`` is an opaque block value."""

    def committed_height(self) -> int: ...

    def has_pending(self) -> bool:
        """Whether there is anything to put in a block (a node waits for work before it
        starts a height; a quiet chain makes one empty block per ``heartbeat_ms``)."""
        ...

    def propose(self, height: int, now_ms: int) -> tuple[bytes, Any]:
        """Build a block for ``height`` from the mempool: ``(block hash, payload)``."""
        ...

    def value_of(self, payload: Any) -> bytes | None:
        """The block hash ``payload`` claims, found without executing it (None when it
        does not parse): a synced block's certificate is checked against it first."""
        ...

    def validate(self, height: int, payload: Any, proposer: str, now_ms: int) -> tuple[bytes | None, bool]:
        """``(block hash, valid)`` of a proposed payload; hash None when it does not even parse.

        ``proposer`` is empty for a block that comes with a commit certificate (block
        sync): then checks against the local clock are skipped."""
        ...

    def commit(self, height: int, payload: Any, cert: CommitCertificate) -> None:
        """Store a decided block (its certificate already checked)."""
        ...

    def time_of(self, payload: Any) -> int:
        """The block time (ms, the proposer's wall clock) of a committed ``payload``."""
        ...

    def committed(self, height: int) -> tuple[Any, CommitCertificate] | None:
        """A committed block and its certificate, for peers that are behind."""
        ...


class WAL(Protocol):
    def append(self, height: int, record: dict[str, Any]) -> None:
        """Durably log an input of ``height`` before it is stepped."""
        ...

    def records(self, height: int) -> Sequence[dict[str, Any]]: ...

    def forget_below(self, height: int) -> None: ...


def must_persist(record: dict[str, Any], own_name: str) -> bool:
    """Whether a WAL must make ``record`` durable (fsync) before it is stepped: this
    validator's own proposals and votes, timeouts and proposed values.  Persisting one
    persists every record logged before it, so a crash loses at most peers' messages
    logged since, and those only ever moved the machine in ways no signature of its own
    depends on (its lock is taken together with its own precommit)."""
    return record.get("from") == own_name or record.get("t") in ("timeout", "value")


class SignGuard(Protocol):
    """Remembers the last (height, round, step, sign bytes) signed; refuses conflicts."""

    def check_and_record(self, height: int, round_: int, step: int, sign_bytes: bytes) -> bool: ...


class MemoryWAL:
    def __init__(self) -> None:
        self._by_height: dict[int, list[dict[str, Any]]] = {}

    def append(self, height: int, record: dict[str, Any]) -> None:
        self._by_height.setdefault(height, []).append(record)

    def records(self, height: int) -> Sequence[dict[str, Any]]:
        return list(self._by_height.get(height, ()))

    def forget_below(self, height: int) -> None:
        for h in [h for h in self._by_height if h < height]:
            del self._by_height[h]


class MemoryGuard:
    """A :class:`SignGuard` in memory.  The node's :class:`node.consensus.FileGuard`
    is this one with :meth:`_persist` writing the record to disk first, so the
    simulator's seeds exercise the very rule a node signs under."""

    def __init__(self) -> None:
        self.last: tuple[int, int, int] = (0, -1, 0)
        self.last_hash = ""
        """SHA-256 (hex) of the last sign bytes."""

    def check_and_record(self, height: int, round_: int, step: int, sign_bytes: bytes) -> bool:
        """Refuses an earlier (height, round, step) and different bytes at the same one;
        the same bytes again are allowed (a restart re-sending its own vote)."""
        digest = hashlib.sha256(sign_bytes).hexdigest()
        hrs = (height, round_, step)
        if hrs < self.last:
            return False
        if hrs == self.last:
            return digest == self.last_hash
        self._persist(hrs, digest)  # raises, and nothing is recorded, if it cannot be kept
        self.last, self.last_hash = hrs, digest
        return True

    def _persist(self, hrs: tuple[int, int, int], digest: str) -> None:
        """Make the new record durable before it is taken (nothing to do in memory)."""


def _seen_key(msg: dict[str, Any]) -> tuple[Any, ...]:
    if msg["t"] == "proposal":
        return ("proposal", msg["round"], msg["from"], msg.get("value"))
    return ("vote", msg.get("type"), msg["round"], msg["from"], msg.get("value"))


_FIELDS = {"proposal": ("round", "valid_round", "value", "block", "from", "sig"),
           "vote": ("type", "round", "value", "from", "sig")}
"""What replaying a logged proposal or vote reads (besides ``t``, ``chain``, ``height``)."""
_KEPT = {t: ("t", "chain", "height", *fields) for t, fields in _FIELDS.items()}


def _well_formed(msg: dict[str, Any]) -> bool:
    """Whether a proposal or vote has every field a replay of it reads, its ``round``
    (and a proposal's ``valid_round``) an integer in range (``bool`` is not a round)."""
    if any(k not in msg for k in _FIELDS[msg["t"]]):
        return False
    r = msg["round"]
    if type(r) is not int or not 0 <= r < MAX_ROUND:
        return False
    if msg["t"] == "proposal":
        vr = msg["valid_round"]
        return type(vr) is int and -1 <= vr < MAX_ROUND
    return True


def proposal_bytes(chain: str, height: int, round_: int, block: bytes, valid_round: int) -> bytes:
    body = {"type": "proposal", "chain": chain, "height": height, "round": round_, "block": block,
            "valid_round": valid_round}
    return signing_message(TAG_VOTE, codec.encode(body))


@dataclass
class Stats:
    dropped: dict[str, int] = field(default_factory=dict)
    decided: int = 0
    late_rounds: int = 0
    """Rounds beyond the first that decisions needed (a proposal late or refused)."""
    synced: int = 0
    refused_to_sign: int = 0
    resumed_at: int | None = None
    """The height from which a validator whose guard was lost signs again."""
    paused_at: int | None = None
    """The height at which a validator that started without its guard on an empty chain
    saw an earlier run of itself (``paused_by``: a block's ``certificate`` or a ``vote``)
    and stopped signing."""
    paused_by: str = ""

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1


class Replica:
    """Consensus for one node (a validator when it has a signer, else an observer)."""

    def __init__(
        self,
        *,
        name: str,
        genesis: Genesis,
        app: App,
        wal: WAL,
        signer: Signer | None = None,
        guard: SignGuard | None = None,
        timeouts: Timeouts | None = None,
        heartbeat_ms: int = 60_000,
        min_block_interval_ms: int = 0,
        paused_until_ms: int | None = None,
        watch_until_ms: int | None = None,
        listen_ms: int = LISTEN_MS,
    ) -> None:
        self.name = name
        self.genesis = genesis
        self.chain = genesis.chain
        self.app = app
        self.wal = wal
        self.validators = genesis.validators
        self.vset = ValidatorSet(tuple((v.name, v.power) for v in genesis.validators))
        self._by_name = {v.name: v for v in genesis.validators}
        is_validator = signer is not None and name in self._by_name
        if is_validator and signer is not None and signer.public_key != self._by_name[name].pub:
            raise LedgerError("this node's key is not the one genesis names for it", code="wrong_node_key")
        self.signer = signer if is_validator else None
        self.guard = guard if guard is not None else MemoryGuard()
        self.paused_until_ms = paused_until_ms if self.signer is not None else None
        """Set for a validator whose sign guard was lost: it signs nothing until a block
        timed at least this (ms) is committed, then records that block's height + 1 in its
        guard and signs from there (ADR 0014)."""
        self._watch_until_ms = watch_until_ms if self.signer is not None else None
        """Set for a validator that started on an empty chain without a guard: a new one,
        or one reinstalled on an empty disk.  If a block it commits carries a precommit of
        its own that this run did not sign, or a peer relays such a vote, an earlier run
        was signing on this chain, and it pauses as if its guard were lost (until a block
        timed at least this)."""
        self._own_precommit_height = 0
        self.listen_ms = listen_ms if self._watch_until_ms is not None else 0
        """A watching validator starts no height before this long after its start, so that
        what peers gossip of an earlier run of it (its votes, others' votes for its
        proposals) reaches it before it signs anything (ADR 0014)."""
        self._listen_until_ms: int | None = None
        self._heard_start = False
        """A peer started the current height while this validator was listening."""
        self._watch_votes: dict[tuple[int, bytes], set[str]] = {}
        """While watching, this height: validators voting for a value at a round this
        validator proposes in, by (round, value), for values this run did not propose."""
        p = genesis.params
        self.timeouts = timeouts or Timeouts(p.timeout_propose_ms, p.timeout_prevote_ms, p.timeout_precommit_ms,
                                             p.timeout_delta_ms)
        self.machine = Machine(self.vset, name if self.signer else None, self.timeouts)
        self.stats = Stats()
        self._payloads: dict[bytes, Any] = {}
        self._own: dict[tuple[str, int], dict[str, Any]] = {}
        """This height's own signed messages by (kind, round), re-sent by gossip."""
        self._peer_heights: dict[str, int] = {}
        self._bad_from: dict[str, int] = {}
        """Bad signatures (and certificates) each peer sent at this height."""
        self._invalid_copies: dict[tuple[tuple[Any, ...], str | None], int] = {}
        """Copies of a signed proposal with an invalid block stepped at this height, by
        proposal and the peer that sent them."""
        self._early: dict[Any, tuple[dict[str, Any], str | None]] = {}
        """Signed proposals (by round) and votes (by validator, type and round) for the next
        height, received before this one was committed.  They are taken up, logged and
        gossiped when that height starts: a vote whose signer then crashed, or lost its
        WAL, reaches the peers that missed it only through the nodes that kept it."""
        self._sync_budgets: dict[str, _SyncBudget] = {}
        self._bad_sigs: set[bytes] = set()
        self._seen: dict[tuple[Any, ...], dict[str, Any]] = {}
        """Consensus messages of this height already logged and stepped, by key; gossip
        relays them (a peer may have missed a vote a faulty validator sent only to some)."""
        self.heartbeat_ms = heartbeat_ms
        self.min_block_interval_ms = min_block_interval_ms
        """Local policy: wait this long after a commit before starting the next height on
        our own (a peer starting it starts it here at once), so events batch into blocks."""
        """An idle chain still decides an (empty) block this often."""
        self._idle_since: int | None = None
        """Set while the next height waits for work; None once it started."""

    # -- life cycle ---------------------------------------------------------------------
    @property
    def height(self) -> int:
        """The height being decided (one above the last committed)."""
        return self.app.committed_height() + 1

    @property
    def idle(self) -> bool:
        """Whether the next height waits for events (or a peer's proposal) to begin."""
        return self._idle_since is not None

    def start(self, now_ms: int) -> list[Out]:
        """Begin (or resume) at the app's next height, replaying that height's WAL."""
        out: list[Out] = []
        h = self.height
        records = self.wal.records(h)
        if self.listen_ms and not records:
            self._listen_until_ms = now_ms + self.listen_ms
            self._idle_since = now_ms
        elif records or self.app.has_pending():
            self._start_height(now_ms, out)
            for rec in records:
                checked = self._validate(rec, now_ms) if rec.get("t") == "proposal" else None
                if rec.get("t") in ("proposal", "vote") and (checked is None or checked[1]):
                    self._seen[_seen_key(rec)] = rec
                    if rec.get("from") == self.name:
                        kind = "proposal" if rec["t"] == "proposal" else rec["type"]
                        self._own[(kind, rec["round"])] = rec
                self._apply_record(rec, now_ms, out, checked)
        else:
            self._idle_since = now_ms
        out.extend(self._gossip())
        return out

    def _start_height(self, now_ms: int, out: list[Out]) -> None:
        self._idle_since = None
        self._emit(self.machine.step(Start(self.height)), now_ms, out)

    def _maybe_start(self, now_ms: int, out: list[Out], *, peer_started: bool = False) -> None:
        if self._idle_since is None:
            return
        if self._listen_until_ms is not None:
            if now_ms < self._listen_until_ms:
                self._heard_start = self._heard_start or peer_started
                return
            self._listen_until_ms = None
            peer_started = peer_started or self._heard_start
        if peer_started:
            self._start_height(now_ms, out)
            return
        waited = now_ms - self._idle_since
        if waited < self.min_block_interval_ms:
            return
        if self.app.has_pending() or waited >= self.heartbeat_ms:
            self._start_height(now_ms, out)

    def poke(self, now_ms: int) -> list[Out]:
        """New work arrived (events admitted): start the waiting height if there is one."""
        out: list[Out] = []
        self._maybe_start(now_ms, out)
        return out

    # -- inputs -------------------------------------------------------------------------
    def on_message(self, sender: str, msg: Any, now_ms: int) -> list[Out]:
        """Handle a message from peer ``sender`` (already authenticated by the transport)."""
        out: list[Out] = []
        if type(msg) is not dict:
            self.stats.drop("malformed")
            return out
        kind = msg.get("t")
        try:
            if kind in ("proposal", "vote"):
                self._consensus_message(msg, now_ms, out, sender)
            elif kind == "status":
                self._on_status(sender, msg, out)
            elif kind == "sync_req":
                self._on_sync_req(sender, msg, now_ms, out)
            elif kind == "commit":
                self._on_commit(sender, msg, now_ms, out)
            else:
                self.stats.drop("unknown_type")
        except StorageError:
            raise  # our disk, not the peer's message
        except (KeyError, TypeError, ValueError, LedgerError):
            self.stats.drop("malformed")
        return out

    def on_timer(self, key: tuple[str, int, int], now_ms: int) -> list[Out]:
        step, h, r = key
        if h != self.height:
            return []
        if step == "start":
            out_s: list[Out] = []
            self._maybe_start(now_ms, out_s)
            return out_s
        rec = {"t": "timeout", "step": step, "height": h, "round": r}
        out: list[Out] = []
        self.wal.append(h, rec)
        self._apply_record(rec, now_ms, out)
        return out

    def tick(self, now_ms: int) -> list[Out]:
        """Periodic gossip: re-send this height's own messages and a status line."""
        out: list[Out] = []
        self._maybe_start(now_ms, out)
        out.extend(self._gossip())
        return out

    # -- consensus messages -------------------------------------------------------------
    def _muted(self, sender: str | None) -> bool:
        """Whether ``sender`` sent too many bad signatures at this height to be heard again
        before the next one (an honest peer relays only what it verified: it sends none)."""
        if sender is not None and self._bad_from.get(sender, 0) >= MAX_BAD_SIGNATURES_PER_PEER:
            self.stats.drop("peer_muted")
            return True
        return False

    def _blame(self, sender: str | None) -> None:
        if sender is not None:
            self._bad_from[sender] = self._bad_from.get(sender, 0) + 1

    def _consensus_message(self, msg: dict[str, Any], now_ms: int, out: list[Out], sender: str | None = None
                           ) -> None:
        h = msg["height"]
        if type(h) is not int or msg.get("chain") != self.chain:
            self.stats.drop("wrong_chain")
            return
        if h < self.height:
            return  # old news
        if h > self.height + 1:
            self.stats.drop("far_future")
            return
        if not _well_formed(msg):
            # Before the signature and the WAL: a logged message must step the machine on
            # every replay (a restart replays the WAL outside any handler).
            self.stats.drop("malformed")
            return
        # Only the fields a message has: anything else a relaying peer added is signed by
        # nobody, and would be logged and gossiped on.
        msg = {k: msg[k] for k in _KEPT[msg["t"]]}
        key = _seen_key(msg)
        if key in self._seen:
            return
        sig = msg.get("sig")
        if type(sig) is bytes and sig in self._bad_sigs:
            self.stats.drop("bad_signature")
            return
        if h == self.height and not self._wanted(msg):
            return  # nothing the machine would record now; gossip brings it again if that changes
        if self._muted(sender):
            return
        if not self._check_signature(msg):
            self.stats.drop("bad_signature")
            self._blame(sender)
            # Only well-sized signatures are remembered: any other length is refused
            # without a verification anyway, and remembering frame-sized junk would let
            # a peer pin 10_000 frames of memory until the next commit.
            if type(sig) is bytes and len(sig) == SIGNATURE_SIZE and len(self._bad_sigs) < 10_000:
                self._bad_sigs.add(sig)
            return
        if self._watch_until_ms is not None:
            self._watch(msg, h)
        if h > self.height:
            # The next height's block cannot be executed before this one is committed:
            # keep a few signed messages (per round, the turn's proposal as each peer
            # relayed it and one vote of each type per validator, first come) and take them
            # up when it starts. A proposal's signature covers its block's hash, not the
            # events: one slot for all would let a faulty peer's copy with other events
            # shut out the proposer's own until it re-sends it.
            r, proposal = msg["round"], msg["t"] == "proposal"  # a round in range: _well_formed
            if r < MAX_EARLY_ROUNDS and (not proposal or msg["from"] == self.vset.proposer(h, r)):
                slot = (r, sender) if proposal else (msg.get("from"), msg.get("type"), r)
                self._early.setdefault(slot, (msg, sender))
            else:
                self.stats.drop(f"early_{msg['t']}")
            return
        self._maybe_start(now_ms, out, peer_started=True)
        checked = None
        if msg["t"] == "proposal":
            # The signed block that does not execute here (its time ahead of this node's
            # clock) is stepped as invalid but not taken as seen, so that a later copy that
            # executes, which the proposer re-sends, still gets through. Each peer gets a
            # few such copies of one proposal executed, then no more. (A copy with other
            # events than its header commits to gets no value from the app: ADR 0018.)
            budget = (key, sender)
            if self._invalid_copies.get(budget, 0) >= MAX_INVALID_COPIES:
                return
            checked = self._validate(msg, now_ms)
            if checked[0] is None:  # its block is not the one signed for: nobody honest sends that
                self.stats.drop("bad_block")
                self._blame(sender)
                return
            if not checked[1]:
                self._invalid_copies[budget] = self._invalid_copies.get(budget, 0) + 1
        if checked is None or checked[1]:
            self._seen[key] = msg
        self.wal.append(h, msg)
        self._apply_record(msg, now_ms, out, checked)

    def _wanted(self, msg: dict[str, Any]) -> bool:
        """Whether the machine would record ``msg`` (of this height) now: checked before
        its signature, so messages it would refuse (rounds far ahead, a proposal out of
        turn, one junk value too many) cost neither a verification nor a WAL record."""
        value, r, vr = msg.get("value"), msg.get("round"), msg.get("valid_round", -1)
        if type(r) is not int or type(vr) is not int or (value is not None and type(value) is not bytes):
            return True  # let the full checks refuse it
        if self.machine.height != msg["height"]:
            return True  # not started yet: the machine buffers it
        sender = str(msg.get("from"))
        if msg["t"] == "proposal":
            if type(value) is not bytes:
                return True
            return self.machine.wants(ProposalIn(msg["height"], r, value, vr, sender, True))
        return self.machine.wants(VoteIn(str(msg.get("type")), msg["height"], r, value, sender, b""))

    def _check_signature(self, msg: dict[str, Any]) -> bool:
        sender = self._by_name.get(msg.get("from"))  # type: ignore[arg-type]
        sig = msg.get("sig")
        if sender is None or type(sig) is not bytes:
            return False
        if msg["t"] == "proposal":
            payload = msg["block"]
            if type(payload) is not dict or type(msg.get("value")) is not bytes:
                return False
            data = proposal_bytes(self.chain, msg["height"], msg["round"], msg["value"], msg["valid_round"])
        else:
            if msg.get("type") not in (PREVOTE, PRECOMMIT):
                return False
            value = msg.get("value")
            if value is not None and (type(value) is not bytes or len(value) != 32):
                return False
            data = vote_bytes(msg["type"], self.chain, msg["height"], msg["round"], value)
        return verify_signature(sender.alg, sender.pub, data, sig)

    def _apply_record(self, rec: dict[str, Any], now_ms: int, out: list[Out],
                      checked: tuple[bytes | None, bool] | None = None) -> None:
        """Step the machine with one logged input (message or timeout); ``checked``: a
        proposal's :meth:`_validate` already done."""
        t = rec["t"]
        if t == "timeout":
            self._emit(self.machine.step(TimeoutIn(rec["step"], rec["height"], rec["round"])), now_ms, out)
        elif t == "proposal":
            value, valid = checked if checked is not None else self._validate(rec, now_ms)
            if value is None:
                self.stats.drop("bad_block")
                return
            inp = ProposalIn(rec["height"], rec["round"], value, rec["valid_round"], rec["from"], valid)
            self._emit(self.machine.step(inp), now_ms, out)
        elif t == "vote":
            inp_v = VoteIn(rec["type"], rec["height"], rec["round"], rec["value"], rec["from"], rec["sig"])
            self._emit(self.machine.step(inp_v), now_ms, out)
        elif t == "value":
            self._payloads[rec["value"]] = rec["block"]
            self._emit(self.machine.step(ValueReady(rec["height"], rec["round"], rec["value"])), now_ms, out)

    def _validate(self, rec: dict[str, Any], now_ms: int) -> tuple[bytes | None, bool]:
        payload = rec["block"]
        value, valid = self.app.validate(rec["height"], payload, rec["from"], now_ms)
        if value is None or value != rec["value"]:
            return None, False
        if valid:  # only a valid block is ever proposed again or decided
            self._payloads[value] = payload
        return value, valid

    # -- machine actions ----------------------------------------------------------------
    def _emit(self, actions: Sequence[Any], now_ms: int, out: list[Out]) -> None:
        for a in actions:
            if isinstance(a, ScheduleTimeout):
                out.append(SetTimer((a.step, a.height, a.round), now_ms + a.delay_ms))
            elif isinstance(a, GetValue):
                value, payload = self.app.propose(a.height, now_ms)
                rec = {"t": "value", "height": a.height, "round": a.round, "value": value, "block": payload}
                self.wal.append(a.height, rec)
                self._apply_record(rec, now_ms, out)
            elif isinstance(a, BroadcastProposal):
                self._broadcast_proposal(a, now_ms, out)
            elif isinstance(a, BroadcastVote):
                self._broadcast_vote(a, now_ms, out)
            elif isinstance(a, Decide):
                self._decide(a, now_ms, out)

    def _watch(self, msg: dict[str, Any], h: int) -> None:
        """Evidence, in a verified message, that an earlier run of this validator signed at
        height ``h``: a message signed with its key that this run did not send (its own
        messages are seen before they are sent), or votes of more than a third of the power
        for a value at a round it proposes in that this run did not propose there (an
        honest validator votes for a value at a round only once that round's proposer
        proposed it, and more than a third includes an honest one)."""
        if msg.get("from") == self.name:
            self._pause_for_earlier_run(h, msg["t"])
            return
        r, value = msg["round"], msg.get("value")
        if (msg["t"] != "vote" or value is None or h != self.height or self.vset.proposer(h, r) != self.name
                or ((own := self._own.get(("proposal", r))) is not None and own["value"] == value)):
            return
        voter = msg["from"]
        voters = self._watch_votes.setdefault((r, value), set())
        if voter not in voters:
            # an honest validator votes for at most one value a round: a validator voting
            # for many is faulty, and is not let fill this table
            if sum(voter in vs for vs in self._watch_votes.values()) >= WATCH_VALUES_PER_VOTER:
                if not voters:
                    del self._watch_votes[(r, value)]
                return
            voters.add(voter)
        if self.vset.one_third(sum(self.vset.power(n) for n in voters)):
            self._pause_for_earlier_run(h, "proposal")

    def _pause_for_earlier_run(self, height: int, evidence: str) -> None:
        """An earlier run of this validator signed on this chain: sign nothing until a
        block timed after this run's start is committed, as if its guard were lost."""
        self.paused_until_ms, self._watch_until_ms = self._watch_until_ms, None
        self.stats.paused_at, self.stats.paused_by = height, evidence

    def _sign(self, h: int, r: int, step: str, data: bytes) -> bytes | None:
        if self.signer is None:
            return None
        if self.paused_until_ms is not None or not self.guard.check_and_record(h, r, STEP_RANK[step], data):
            self.stats.refused_to_sign += 1
            return None
        if step == PRECOMMIT:
            self._own_precommit_height = h
        return self.signer.sign(data)

    def _broadcast_proposal(self, a: BroadcastProposal, now_ms: int, out: list[Out]) -> None:
        payload = self._payloads.get(a.value)
        if payload is None:
            return
        data = proposal_bytes(self.chain, a.height, a.round, a.value, a.valid_round)
        sig = self._sign(a.height, a.round, PROPOSE, data)
        if sig is None:
            return
        msg = {"t": "proposal", "chain": self.chain, "height": a.height, "round": a.round, "value": a.value,
               "valid_round": a.valid_round, "block": payload, "from": self.name, "sig": sig}
        self._own[("proposal", a.round)] = msg
        self._seen[_seen_key(msg)] = msg
        self.wal.append(a.height, msg)
        out.append(Send(None, msg))
        self._apply_record(msg, now_ms, out)  # deliver to self

    def _broadcast_vote(self, a: BroadcastVote, now_ms: int, out: list[Out]) -> None:
        data = vote_bytes(a.type, self.chain, a.height, a.round, a.value)
        sig = self._sign(a.height, a.round, a.type, data)
        if sig is None:
            return
        msg = {"t": "vote", "type": a.type, "chain": self.chain, "height": a.height, "round": a.round,
               "value": a.value, "from": self.name, "sig": sig}
        self._own[(a.type, a.round)] = msg
        self._seen[_seen_key(msg)] = msg
        self.wal.append(a.height, msg)
        out.append(Send(None, msg))
        self._apply_record(msg, now_ms, out)

    def _decide(self, d: Decide, now_ms: int, out: list[Out]) -> None:
        payload = self._payloads.get(d.value)
        if payload is None:  # pragma: no cover - the machine decides only on a proposal it holds
            return
        cert = CommitCertificate(d.height, d.round, d.value, d.precommits)
        self.stats.late_rounds += d.round
        self._commit(d.height, payload, cert, now_ms, out)

    def _commit(self, height: int, payload: Any, cert: CommitCertificate, now_ms: int, out: list[Out]) -> None:
        self.app.commit(height, payload, cert)
        if self._watch_until_ms is not None:
            if self._own_precommit_height == height:
                self._watch_until_ms = None  # this run takes part; older blocks were checked
            elif any(name == self.name for name, _sig in cert.precommits):
                self._pause_for_earlier_run(height, "certificate")
        if self.paused_until_ms is not None and self.app.time_of(payload) >= self.paused_until_ms:
            self.guard.check_and_record(height + 1, -1, 0, b"")  # nothing at or below this height
            self.paused_until_ms = None
            self.stats.resumed_at = height + 1
        self.stats.decided += 1
        self.wal.forget_below(height + 1)
        self._payloads.clear()
        self._own.clear()
        self._seen.clear()
        self._bad_sigs.clear()
        self._bad_from.clear()
        self._invalid_copies.clear()
        self._watch_votes.clear()
        self._idle_since = now_ms
        if self.min_block_interval_ms:
            out.append(SetTimer(("start", height + 1, 0), now_ms + self.min_block_interval_ms))
        self._maybe_start(now_ms, out)
        out.append(Send(None, self._status()))
        early, self._early = self._early, {}
        for msg, sender in early.values():
            if msg["height"] == self.height:
                self._consensus_message(msg, now_ms, out, sender)  # checked again, logged, executed

    # -- gossip and block sync ----------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        return {"t": "status", "chain": self.chain, "height": self.app.committed_height(), "from": self.name}

    def _gossip(self) -> list[Out]:
        """Own messages of this height, every vote seen, and the proposals that matter
        (own ones and any a quorum prevoted or precommitted)."""
        m = self.machine
        wanted = {m.locked_value, m.valid_value}
        for st in m.rounds.values():
            for v in st.proposals:
                if m.validators.quorum(m._power(st.prevotes, v)) or m.validators.quorum(m._power(st.precommits, v)):
                    wanted.add(v)
        out: list[Out] = [Send(None, msg) for msg in self._own.values()]
        for key, msg in self._seen.items():
            if msg.get("from") == self.name:
                continue
            if key[0] == "vote" or msg.get("value") in wanted:
                out.append(Send(None, msg))
        out.append(Send(None, self._status()))
        # ask the most advanced peer we know of for what we miss
        ahead = [(h, n) for n, h in self._peer_heights.items() if h > self.app.committed_height()]
        if ahead:
            _h, peer = max(ahead)
            out.append(Send(peer, {"t": "sync_req", "chain": self.chain, "height": self.height}))
        return out

    def _on_status(self, sender: str, msg: dict[str, Any], out: list[Out]) -> None:
        h = msg["height"]
        if msg.get("chain") != self.chain:
            self.stats.drop("wrong_chain")
            return
        if type(h) is not int or h < 0:
            self.stats.drop("malformed")
            return
        self._peer_heights[sender] = h
        if h > self.app.committed_height():
            out.append(Send(sender, {"t": "sync_req", "chain": self.chain, "height": self.height}))

    def _on_sync_req(self, sender: str, msg: dict[str, Any], now_ms: int, out: list[Out]) -> None:
        """Send up to :data:`MAX_SYNC_BATCH` committed blocks from the asked height, within
        the peer's budget, skipping those it was sent a moment ago."""
        h = msg["height"]
        if msg.get("chain") != self.chain:
            self.stats.drop("wrong_chain")
            return
        if type(h) is not int or h < 1:
            self.stats.drop("malformed")
            return
        b = self._sync_budgets.get(sender)
        if b is None:
            b = self._sync_budgets[sender] = _SyncBudget(SYNC_BURST_BYTES, now_ms)
        b.tokens = min(SYNC_BURST_BYTES, b.tokens + max(0, now_ms - b.at_ms) * SYNC_BYTES_PER_S / 1000)
        b.at_ms = now_ms
        first = h
        if h <= b.sent_up_to and now_ms - b.sent_at_ms < SYNC_IN_FLIGHT_MS:
            first = b.sent_up_to + 1
        last = min(h + MAX_SYNC_BATCH, self.app.committed_height() + 1)
        if first >= last:
            if h < last:
                self.stats.drop("sync_in_flight")
            return
        for k in range(first, last):
            if b.tokens <= 0:
                self.stats.drop("sync_rate_limited")
                break
            found = self.app.committed(k)
            if found is None:
                break
            payload, cert = found
            b.tokens -= _approx_size(payload) + 200 * len(cert.precommits)
            b.sent_up_to, b.sent_at_ms = k, now_ms
            out.append(Send(sender, {"t": "commit", "chain": self.chain, "height": k, "block": payload,
                                     "cert": cert.to_dict()}))

    def _on_commit(self, sender: str, msg: dict[str, Any], now_ms: int, out: list[Out]) -> None:
        """A committed block from a peer: check its certificate and contents, then apply."""
        h = msg["height"]
        if msg.get("chain") != self.chain:
            self.stats.drop("wrong_chain")
            return
        if type(h) is not int:
            self.stats.drop("malformed")
            return
        if h != self.height:
            return  # a block we have, or one we cannot check yet: not the sender's fault
        if self._muted(sender):
            return
        cert = CommitCertificate.from_dict(msg["cert"])
        claimed = self.app.value_of(msg["block"])
        if claimed is None:
            self.stats.drop("bad_sync_block")
            return
        # the certificate first: a few signatures, where executing a block costs one per event
        try:
            verify_commit(cert, self.chain, h, claimed, self.validators)
        except LedgerError:
            self.stats.drop("bad_sync_certificate")
            self._blame(sender)
            return
        value, valid = self.app.validate(h, msg["block"], "", now_ms)
        if value != claimed or not valid:
            self.stats.drop("bad_sync_block")
            if value is None:  # a certified header with other events: the sender changed them
                self._blame(sender)
            return
        self.stats.synced += 1
        self._commit(h, msg["block"], cert, now_ms, out)
