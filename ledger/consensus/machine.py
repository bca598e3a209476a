"""The Tendermint consensus algorithm as a pure state machine.

This is Algorithm 1 of Buchman, Kwon and Milosevic, "The latest gossip on BFT
consensus" (arXiv:1807.04938), with voting power: "2f+1" reads "more than 2/3 of the
total power" and "f+1" reads "more than 1/3".  Line numbers in comments refer to the
paper's Algorithm 1.

The machine does no I/O, reads no clock and draws no randomness.  Its driver feeds it
inputs (:class:`Start`, :class:`ProposalIn`, :class:`VoteIn`, :class:`TimeoutIn`,
:class:`ValueReady`) and carries out the actions it returns (:class:`GetValue`,
:class:`BroadcastProposal`, :class:`BroadcastVote`, :class:`ScheduleTimeout`,
:class:`Decide`).  Values are identified by their id (the block hash); the driver
keeps the blocks, checks signatures and decides ``valid(v)`` (by executing the block)
before a proposal reaches the machine.  Votes carry an opaque signature the machine
keeps so that a decision comes with the precommits that justify it.

Every input is idempotent and may arrive in any order, duplicated or late: the upon
rules are re-evaluated after each input, and each rule that the paper fires "for the
first time" is guarded by a flag.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

PROPOSE, PREVOTE, PRECOMMIT = "propose", "prevote", "precommit"
_STEP_ORDER = {PROPOSE: 0, PREVOTE: 1, PRECOMMIT: 2}
NIL: bytes | None = None


# -- inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Begin ``height`` (the first height, or the next one after a decision was stored)."""

    height: int


@dataclass(frozen=True)
class ProposalIn:
    """A proposal from ``proposer`` whose signature the driver checked.

    ``valid`` is the driver's ``valid(v)``: the block extends the chain, executes and
    hashes to ``value``.
    """

    height: int
    round: int
    value: bytes
    valid_round: int
    proposer: str
    valid: bool


@dataclass(frozen=True)
class VoteIn:
    """A prevote or precommit whose signature the driver checked (``value`` None is nil)."""

    type: str
    height: int
    round: int
    value: bytes | None
    validator: str
    signature: bytes = b""


@dataclass(frozen=True)
class TimeoutIn:
    step: str
    height: int
    round: int


@dataclass(frozen=True)
class ValueReady:
    """The driver's answer to :class:`GetValue`: a new block it built, by id."""

    height: int
    round: int
    value: bytes


Input = Start | ProposalIn | VoteIn | TimeoutIn | ValueReady


# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GetValue:
    """Build a new block for ``height`` and answer with :class:`ValueReady`."""

    height: int
    round: int


@dataclass(frozen=True)
class BroadcastProposal:
    height: int
    round: int
    value: bytes
    valid_round: int


@dataclass(frozen=True)
class BroadcastVote:
    type: str
    height: int
    round: int
    value: bytes | None


@dataclass(frozen=True)
class ScheduleTimeout:
    step: str
    height: int
    round: int
    delay_ms: int


@dataclass(frozen=True)
class Decide:
    """``value`` is decided at ``height``; ``precommits`` (validator, signature) prove it."""

    height: int
    round: int
    value: bytes
    precommits: tuple[tuple[str, bytes], ...]


Action = GetValue | BroadcastProposal | BroadcastVote | ScheduleTimeout | Decide


# -- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Timeouts grow linearly with the round so that, after GST, a round lasts long enough."""

    propose_ms: int = 1_000
    prevote_ms: int = 500
    precommit_ms: int = 500
    delta_ms: int = 250

    def of(self, step: str, round_: int) -> int:
        base = {PROPOSE: self.propose_ms, PREVOTE: self.prevote_ms, PRECOMMIT: self.precommit_ms}[step]
        return base + round_ * self.delta_ms


@dataclass(frozen=True)
class ValidatorSet:
    """Names and voting power, in genesis order; proposers rotate by height and round."""

    powers: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if not self.powers or any(p <= 0 for _n, p in self.powers):
            raise ValueError("a validator set needs validators with positive power")

    @property
    def total(self) -> int:
        return sum(p for _n, p in self.powers)

    def power(self, name: str) -> int:
        for n, p in self.powers:
            if n == name:
                return p
        return 0

    def proposer(self, height: int, round_: int) -> str:
        """Weighted round robin: slot ``(height + round) mod total`` over the power line."""
        slot = (height + round_) % self.total
        for n, p in self.powers:
            if slot < p:
                return n
            slot -= p
        raise AssertionError("unreachable: slot < total")  # pragma: no cover

    def quorum(self, power: int) -> bool:
        """More than 2/3 of the total power ("2f+1")."""
        return 3 * power > 2 * self.total

    def one_third(self, power: int) -> bool:
        """More than 1/3 of the total power ("f+1")."""
        return 3 * power > self.total


# -- the machine ------------------------------------------------------------------------


@dataclass
class _Round:
    proposal: ProposalIn | None = None
    """The first proposal received: the one this validator prevotes on (lines 22, 28)."""
    proposals: dict[bytes, ProposalIn] = field(default_factory=dict)
    """Every proposal of the round by value (a faulty proposer may send several); lines
    36 and 49 act on whichever one the quorum formed on."""
    prevotes: dict[str, dict[bytes | None, bytes]] = field(default_factory=dict)
    precommits: dict[str, dict[bytes | None, bytes]] = field(default_factory=dict)
    """validator -> {value: signature}.  An honest validator votes once a round; a faulty
    one may vote for several values, and each of its votes counts for its value: two
    quorums still share an honest validator, so safety holds, and honest nodes that saw
    different first votes from it can still agree on the value a quorum formed on."""
    timeout_prevote_scheduled: bool = False  # line 34 "for the first time"
    timeout_precommit_scheduled: bool = False  # line 47 "for the first time"
    line36_done: bool = False  # line 36 "for the first time"


class Machine:
    """One validator's (or observer's, with ``me=None``) view of consensus.

    ``step(input)`` returns the actions to carry out, in order.  The machine keeps the
    state of the current height only; messages for later heights are kept (bounded)
    and replayed when that height starts; messages for earlier heights are ignored.
    """

    MAX_FUTURE_ROUNDS = 64
    """Messages more than this many rounds ahead of the current round are dropped."""
    MAX_FUTURE_HEIGHT_MSGS = 4096
    MAX_PROPOSALS_PER_ROUND = 4
    MAX_EQUIVOCATIONS_KEPT = 1024

    def __init__(self, validators: ValidatorSet, me: str | None, timeouts: Timeouts = Timeouts()) -> None:
        self.validators = validators
        self.me = me if me is not None and validators.power(me) > 0 else None
        self.timeouts = timeouts
        self.height = -1
        self.round = 0
        self.step_ = PROPOSE
        self.locked_value: bytes | None = None
        self.locked_round = -1
        self.valid_value: bytes | None = None
        self.valid_round = -1
        self.decided: bytes | None = None
        self.rounds: dict[int, _Round] = {}
        self._future: list[ProposalIn | VoteIn] = []
        self._proposed: set[bytes] = set()
        """Values some proposal of the current height carries."""
        self.equivocations: deque[tuple[str, str, int, int]] = deque(maxlen=self.MAX_EQUIVOCATIONS_KEPT)
        """The latest (validator, type, height, round) of conflicting votes and proposals seen (the
        first counts).  Bounded: it outlives heights, and a byzantine validator can add hundreds
        a height."""
        self.equivocations_seen = 0
        """How many conflicting votes and proposals were recorded, in all."""

    # -- entry point --------------------------------------------------------------------
    def step(self, inp: Input) -> list[Action]:
        out: list[Action] = []
        if isinstance(inp, Start):
            if inp.height > self.height:
                self._start_height(inp.height, out)
        elif isinstance(inp, ProposalIn | VoteIn):
            if inp.height > self.height:
                if len(self._future) < self.MAX_FUTURE_HEIGHT_MSGS:
                    self._future.append(inp)
            elif inp.height == self.height and self.decided is None:
                if self._record(inp):
                    self._evaluate(out)
        elif isinstance(inp, TimeoutIn):
            if inp.height == self.height and self.decided is None:
                self._on_timeout(inp, out)
                self._evaluate(out)
        elif isinstance(inp, ValueReady):
            if (
                inp.height == self.height
                and inp.round == self.round
                and self.decided is None
                and self.step_ == PROPOSE
                and self.me is not None
                and self.validators.proposer(self.height, self.round) == self.me
            ):
                out.append(BroadcastProposal(self.height, self.round, inp.value, -1))
        return out

    # -- heights and rounds -------------------------------------------------------------
    def _start_height(self, height: int, out: list[Action]) -> None:
        self.height = height
        self.locked_value, self.locked_round = None, -1
        self.valid_value, self.valid_round = None, -1
        self.decided = None
        self.rounds = {}
        self._proposed = set()
        self._start_round(0, out)
        later: list[ProposalIn | VoteIn] = []
        for m in self._future:
            if m.height == height:
                self._record(m)
            elif m.height > height:
                later.append(m)
        self._future = later
        self._evaluate(out)

    def _start_round(self, round_: int, out: list[Action]) -> None:  # line 11
        self.round = round_
        self.step_ = PROPOSE
        self.rounds.setdefault(round_, _Round())
        if self.me is not None and self.validators.proposer(self.height, round_) == self.me:
            if self.valid_value is not None:
                out.append(BroadcastProposal(self.height, round_, self.valid_value, self.valid_round))
            else:
                out.append(GetValue(self.height, round_))
        out.append(ScheduleTimeout(PROPOSE, self.height, round_, self.timeouts.of(PROPOSE, round_)))

    def _rnd(self, r: int) -> _Round:
        return self.rounds.setdefault(r, _Round())

    # -- recording messages -------------------------------------------------------------
    def wants(self, m: ProposalIn | VoteIn) -> bool:
        """Whether recording ``m`` now could change anything (pure; nothing recorded).

        A caller that deduplicates messages should remember only wanted ones: a vote
        refused now (a second vote for a value no proposal carries yet) may be wanted
        once its proposal arrives.
        """
        if m.height != self.height or self.decided is not None:
            return m.height > self.height
        if m.round < 0 or m.round > self.round + self.MAX_FUTURE_ROUNDS:
            return False
        r = self.rounds.get(m.round)
        if isinstance(m, ProposalIn):
            if m.proposer != self.validators.proposer(m.height, m.round) or not -1 <= m.valid_round < m.round:
                return False
            if r is None:
                return True
            known = r.proposals.get(m.value)
            if known is not None:
                return not known.valid  # a valid copy replaces an invalid one
            return len(r.proposals) < self.MAX_PROPOSALS_PER_ROUND
        if self.validators.power(m.validator) == 0 or m.type not in (PREVOTE, PRECOMMIT):
            return False
        box = None if r is None else (r.prevotes if m.type == PREVOTE else r.precommits)
        mine = {} if box is None else box.get(m.validator, {})
        if m.value in mine:
            return False
        return not mine or m.value is None or m.value in self._proposed

    def _record(self, m: ProposalIn | VoteIn) -> bool:
        """Store a message of the current height; False if it changes nothing."""
        if m.round < 0 or m.round > self.round + self.MAX_FUTURE_ROUNDS:
            return False
        r = self._rnd(m.round)
        if isinstance(m, ProposalIn):
            if m.proposer != self.validators.proposer(m.height, m.round):
                return False
            if not -1 <= m.valid_round < m.round:
                return False
            known = r.proposals.get(m.value)
            if known is not None:
                # The same signed proposal with another block: the signature covers the
                # value (the header's hash), not the events, so anyone relaying it can
                # swap them.  A valid copy replaces an invalid one; nothing else changes.
                if known.valid or not m.valid:
                    return False
                r.proposals[m.value] = m
                if r.proposal is known:
                    r.proposal = m
                return True
            if len(r.proposals) >= self.MAX_PROPOSALS_PER_ROUND:
                return False
            if r.proposal is not None:
                self.equivocations.append((m.proposer, "proposal", m.height, m.round))
                self.equivocations_seen += 1
            else:
                r.proposal = m
            r.proposals[m.value] = m
            self._proposed.add(m.value)
            return True
        if self.validators.power(m.validator) == 0:
            return False
        box = r.prevotes if m.type == PREVOTE else r.precommits if m.type == PRECOMMIT else None
        if box is None:
            return False
        mine = box.setdefault(m.validator, {})
        if m.value in mine:
            return False
        # A validator's first vote always counts (toward "any" tallies).  Further votes
        # count only for nil or for a value some proposal of this height carries: votes
        # for anything else can never justify a step, and a faulty validator must not be
        # able to crowd out its own vote for a real value with junk.
        if mine and m.value is not None and m.value not in self._proposed:
            return False
        if mine:
            self.equivocations.append((m.validator, m.type, m.height, m.round))
            self.equivocations_seen += 1
        mine[m.value] = m.signature
        return True

    def _power(self, votes: dict[str, dict[bytes | None, bytes]], value: object = ...) -> int:
        """Power of the validators that voted for ``value`` (``...``: for anything, nil
        included; each validator counted once)."""
        return sum(self.validators.power(n) for n, vs in votes.items() if value is ... or value in vs)

    # -- the upon rules -----------------------------------------------------------------
    def _evaluate(self, out: list[Action]) -> None:
        """Fire every rule whose condition holds, until none does."""
        for _ in range(1000):  # each pass changes step, round or height, or fires a once-only rule
            if self.decided is not None or not self._fire_one(out):
                return
        raise RuntimeError("consensus rules did not settle")  # pragma: no cover

    def _fire_one(self, out: list[Action]) -> bool:
        q = self.validators.quorum
        h, rnd = self.height, self.round
        cur = self._rnd(rnd)

        # line 49: decide on any round's proposal with a quorum of precommits
        for r, st in sorted(self.rounds.items()):
            for prop in st.proposals.values():
                if prop.valid and q(self._power(st.precommits, prop.value)):
                    self._decide(r, prop.value, st, out)
                    return True

        # line 55: f+1 messages of a later round -> skip to it
        for r in sorted(self.rounds):
            if r > rnd:
                st = self.rounds[r]
                senders = set(st.prevotes) | set(st.precommits)
                senders.update(x.proposer for x in st.proposals.values())
                if self.validators.one_third(sum(self.validators.power(n) for n in senders)):
                    self._start_round(r, out)
                    return True

        p = cur.proposal
        if self.step_ == PROPOSE and p is not None:
            if p.valid_round == -1:  # line 22
                ok = p.valid and (self.locked_round == -1 or self.locked_value == p.value)
                self._prevote(p.value if ok else NIL, out)
                return True
            vr = p.valid_round  # line 28
            if 0 <= vr < rnd and q(self._power(self._rnd(vr).prevotes, p.value)):
                ok = p.valid and (self.locked_round <= vr or self.locked_value == p.value)
                self._prevote(p.value if ok else NIL, out)
                return True

        # line 34
        if self.step_ == PREVOTE and not cur.timeout_prevote_scheduled and q(self._power(cur.prevotes)):
            cur.timeout_prevote_scheduled = True
            out.append(ScheduleTimeout(PREVOTE, h, rnd, self.timeouts.of(PREVOTE, rnd)))
            return True

        # line 36
        if not cur.line36_done and _STEP_ORDER[self.step_] >= _STEP_ORDER[PREVOTE]:
            for v in cur.proposals.values():
                if v.valid and q(self._power(cur.prevotes, v.value)):
                    cur.line36_done = True
                    if self.step_ == PREVOTE:
                        self.locked_value, self.locked_round = v.value, rnd
                        self._precommit(v.value, out)
                    self.valid_value, self.valid_round = v.value, rnd
                    return True

        # line 44
        if self.step_ == PREVOTE and q(self._power(cur.prevotes, NIL)):
            self._precommit(NIL, out)
            return True

        # line 47
        if not cur.timeout_precommit_scheduled and q(self._power(cur.precommits)):
            cur.timeout_precommit_scheduled = True
            out.append(ScheduleTimeout(PRECOMMIT, h, rnd, self.timeouts.of(PRECOMMIT, rnd)))
            return True
        return False

    def _prevote(self, value: bytes | None, out: list[Action]) -> None:
        self.step_ = PREVOTE
        if self.me is not None:
            out.append(BroadcastVote(PREVOTE, self.height, self.round, value))

    def _precommit(self, value: bytes | None, out: list[Action]) -> None:
        self.step_ = PRECOMMIT
        if self.me is not None:
            out.append(BroadcastVote(PRECOMMIT, self.height, self.round, value))

    def _decide(self, r: int, value: bytes, st: _Round, out: list[Action]) -> None:
        self.decided = value
        pcs = tuple(sorted((n, vs[value]) for n, vs in st.precommits.items() if value in vs))
        out.append(Decide(self.height, r, value, pcs))

    # -- timeouts (lines 57-65) ---------------------------------------------------------
    def _on_timeout(self, t: TimeoutIn, out: list[Action]) -> None:
        if t.round != self.round:
            return
        if t.step == PROPOSE and self.step_ == PROPOSE:
            self._prevote(NIL, out)
        elif t.step == PREVOTE and self.step_ == PREVOTE:
            self._precommit(NIL, out)
        elif t.step == PRECOMMIT:
            self._start_round(self.round + 1, out)

    # -- introspection ------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        return {
            "height": self.height,
            "round": self.round,
            "step": self.step_,
            "locked_round": self.locked_round,
            "valid_round": self.valid_round,
            "decided": self.decided.hex() if self.decided else None,
        }


def validator_set(names_powers: Sequence[tuple[str, int]]) -> ValidatorSet:
    return ValidatorSet(tuple(names_powers))
