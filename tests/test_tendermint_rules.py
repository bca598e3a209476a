"""Each rule of Algorithm 1 ("The latest gossip on BFT consensus", arXiv 1807.04938),
driven alone on the pure state machine.

The simulator checks that the cluster stays safe and live under faults; it cannot tell
a rule written as the paper says from one that is merely safe (a validator that never
decides on an earlier round's precommits, or prevotes nil for the very value it is
locked on, is safe and, given block sync, live).  These tests pin each rule to the
paper's line: four validators ``a``..``d`` of equal power (``f = 1``: a quorum is 3, the
skip threshold 2), the machine under test is ``a``; at height 1 the proposers of rounds
0, 1, 2, 3 are ``b``, ``c``, ``d``, ``a``.
"""

from __future__ import annotations

from ledger.consensus.machine import (
    PRECOMMIT,
    PREVOTE,
    PROPOSE,
    Action,
    BroadcastProposal,
    BroadcastVote,
    Decide,
    GetValue,
    Machine,
    ProposalIn,
    ScheduleTimeout,
    Start,
    TimeoutIn,
    ValidatorSet,
    VoteIn,
)

VS = ValidatorSet((("a", 1), ("b", 1), ("c", 1), ("d", 1)))
V = b"\x01" * 32
W = b"\x02" * 32
NIL = None


def votes(m: Machine, kind: str, r: int, value: bytes | None, who: str, height: int = 1) -> list[Action]:
    out: list[Action] = []
    for n in who:
        out += m.step(VoteIn(kind, height, r, value, n, b"sig-" + n.encode()))
    return out


def my_votes(out: list[Action]) -> list[tuple[str, int, bytes | None]]:
    return [(a.type, a.round, a.value) for a in out if isinstance(a, BroadcastVote)]


def started() -> Machine:
    m = Machine(VS, "a")
    assert [VS.proposer(1, r) for r in range(4)] == ["b", "c", "d", "a"]
    m.step(Start(1))
    return m


def locked_on_v_in_round_0() -> Machine:
    """``a`` prevotes and precommits V in round 0 (locking it), the others precommit nil:
    round 0 ends undecided and ``a`` is in round 1, still locked on V."""
    m = started()
    m.step(ProposalIn(1, 0, V, -1, "b", True))
    assert my_votes(votes(m, PREVOTE, 0, V, "abc")) == [(PRECOMMIT, 0, V)]
    votes(m, PRECOMMIT, 0, NIL, "bcd")
    m.step(TimeoutIn(PRECOMMIT, 1, 0))
    assert (m.round, m.locked_value, m.locked_round) == (1, V, 0)
    return m


def quorum_of_prevotes_without_their_proposal(m: Machine, r: int, value: bytes) -> None:
    """Round ``r`` passes with b, c, d prevoting ``value`` whose proposal ``a`` never
    sees: ``a`` prevotes and precommits nil on its timeouts and moves to round r + 1."""
    assert m.round == r
    votes(m, PREVOTE, r, value, "bcd")
    assert my_votes(m.step(TimeoutIn(PROPOSE, 1, r))) == [(PREVOTE, r, NIL)]
    assert my_votes(m.step(TimeoutIn(PREVOTE, 1, r))) == [(PRECOMMIT, r, NIL)]
    votes(m, PRECOMMIT, r, NIL, "bcd")
    m.step(TimeoutIn(PRECOMMIT, 1, r))
    assert m.round == r + 1


# -- lines 11-21: StartRound ------------------------------------------------------------

def test_line_11_a_proposer_without_a_valid_value_asks_for_one_and_every_round_arms_its_propose_timeout() -> None:
    m = Machine(VS, "b")
    out = m.step(Start(1))
    assert GetValue(1, 0) in out
    assert ScheduleTimeout(PROPOSE, 1, 0, m.timeouts.of(PROPOSE, 0)) in out
    other = Machine(VS, "a")
    out = other.step(Start(1))
    assert not any(isinstance(a, GetValue) for a in out)
    assert ScheduleTimeout(PROPOSE, 1, 0, other.timeouts.of(PROPOSE, 0)) in out


def test_line_15_a_proposer_with_a_valid_value_proposes_it_again_with_its_round() -> None:
    """Lines 36-43 set validValue even after ``a`` precommitted nil; when its turn to
    propose comes (round 3), it proposes that value with validRound, not a new one."""
    m = started()
    m.step(TimeoutIn(PROPOSE, 1, 0))  # prevote nil: b's proposal is late
    assert my_votes(votes(m, PREVOTE, 0, NIL, "abc")) == [(PRECOMMIT, 0, NIL)]  # line 44
    m.step(ProposalIn(1, 0, V, -1, "b", True))
    votes(m, PREVOTE, 0, V, "d")  # d prevoted V: one short of a quorum
    assert (m.valid_value, m.locked_round) == (None, -1)
    # three prevotes for V in round 0 (d's and, equivocating, b's and c's) now that a has precommitted
    out = votes(m, PREVOTE, 0, V, "bc")
    assert my_votes(out) == []  # no second precommit in round 0
    assert (m.valid_value, m.valid_round) == (V, 0)
    assert (m.locked_value, m.locked_round) == (None, -1)  # a precommitted nil: not locked
    out = votes(m, PRECOMMIT, 3, NIL, "bc")  # f + 1 messages of round 3: skip to it
    assert m.round == 3 and VS.proposer(1, 3) == "a"
    assert BroadcastProposal(1, 3, V, 0) in out
    assert not any(isinstance(a, GetValue) for a in out)


# -- lines 22-27: a proposal with no valid round -----------------------------------------

def test_line_22_an_unlocked_validator_prevotes_a_valid_proposal_and_nil_for_an_invalid_one() -> None:
    m = started()
    assert my_votes(m.step(ProposalIn(1, 0, V, -1, "b", True))) == [(PREVOTE, 0, V)]
    m = started()
    assert my_votes(m.step(ProposalIn(1, 0, V, -1, "b", False))) == [(PREVOTE, 0, NIL)]


def test_line_22_a_locked_validator_prevotes_its_locked_value_when_it_is_proposed_afresh() -> None:
    m = locked_on_v_in_round_0()
    assert my_votes(m.step(ProposalIn(1, 1, V, -1, "c", True))) == [(PREVOTE, 1, V)]


def test_line_22_a_locked_validator_prevotes_nil_for_another_value() -> None:
    m = locked_on_v_in_round_0()
    assert my_votes(m.step(ProposalIn(1, 1, W, -1, "c", True))) == [(PREVOTE, 1, NIL)]


# -- lines 28-33: a proposal carrying a valid round --------------------------------------

def test_line_28_a_lock_older_than_the_proposals_valid_round_gives_way() -> None:
    m = locked_on_v_in_round_0()
    quorum_of_prevotes_without_their_proposal(m, 1, W)
    assert my_votes(m.step(ProposalIn(1, 2, W, 1, "d", True))) == [(PREVOTE, 2, W)]


def test_line_28_a_lock_newer_than_the_proposals_valid_round_holds() -> None:
    m = started()
    quorum_of_prevotes_without_their_proposal(m, 0, W)
    m.step(ProposalIn(1, 1, V, -1, "c", True))
    assert my_votes(votes(m, PREVOTE, 1, V, "abd")) == [(PRECOMMIT, 1, V)]
    assert (m.locked_value, m.locked_round) == (V, 1)
    votes(m, PRECOMMIT, 1, NIL, "bcd")
    m.step(TimeoutIn(PRECOMMIT, 1, 1))
    assert my_votes(m.step(ProposalIn(1, 2, W, 0, "d", True))) == [(PREVOTE, 2, NIL)]


def test_line_28_a_lock_of_the_proposals_valid_round_itself_gives_way() -> None:
    """``lockedRound <= vr``, not ``<``: with at most f faulty validators the lock of round
    vr is on the value proposed, so the difference shows only when two validators
    (b and c, beyond f) prevote both V and W in round 0: the rule still reads as written."""
    m = locked_on_v_in_round_0()
    quorum_of_prevotes_without_their_proposal(m, 1, V)
    assert m.step(ProposalIn(1, 2, W, 0, "d", True)) == []  # no quorum for W in round 0 yet
    assert my_votes(votes(m, PREVOTE, 0, W, "bcd")) == [(PREVOTE, 2, W)]


def test_line_28_without_a_quorum_of_prevotes_at_the_valid_round_the_validator_waits_for_its_timeout() -> None:
    m = locked_on_v_in_round_0()
    votes(m, PREVOTE, 1, W, "bc")  # two of the three it needs
    m.step(TimeoutIn(PROPOSE, 1, 1))
    votes(m, PRECOMMIT, 1, NIL, "bcd")
    m.step(TimeoutIn(PRECOMMIT, 1, 1))
    assert m.step(ProposalIn(1, 2, W, 1, "d", True)) == []
    assert m.step_ == PROPOSE
    assert my_votes(votes(m, PREVOTE, 1, W, "d")) == [(PREVOTE, 2, W)]  # the third arrives


def test_line_28_an_invalid_value_gets_nil_even_with_a_quorum_at_its_valid_round() -> None:
    m = locked_on_v_in_round_0()
    quorum_of_prevotes_without_their_proposal(m, 1, W)
    assert my_votes(m.step(ProposalIn(1, 2, W, 1, "d", False))) == [(PREVOTE, 2, NIL)]


def test_a_proposal_whose_valid_round_is_not_below_its_round_is_ignored() -> None:
    m = started()
    bad = ProposalIn(1, 0, V, 0, "b", True)
    assert not m.wants(bad)
    assert m.step(bad) == []
    assert m.rounds[0].proposal is None


# -- lines 34-35, 44-46, 47-48: quorums of any value -------------------------------------

def test_line_34_a_quorum_of_mixed_prevotes_arms_the_prevote_timeout_once() -> None:
    m = started()
    out = votes(m, PREVOTE, 0, NIL, "b") + votes(m, PREVOTE, 0, W, "c") + votes(m, PREVOTE, 0, V, "d")
    assert not [a for a in out if isinstance(a, ScheduleTimeout)]  # "while step = prevote": a has not voted
    out = m.step(ProposalIn(1, 0, V, -1, "b", True))  # a prevotes V: now in the prevote step
    armed = [a for a in out if isinstance(a, ScheduleTimeout)]
    assert armed == [ScheduleTimeout(PREVOTE, 1, 0, m.timeouts.of(PREVOTE, 0))]
    assert not [a for a in votes(m, PREVOTE, 0, NIL, "a") if isinstance(a, ScheduleTimeout)]
    assert my_votes(m.step(TimeoutIn(PREVOTE, 1, 0))) == [(PRECOMMIT, 0, NIL)]  # line 61


def test_line_44_a_quorum_of_nil_prevotes_precommits_nil_at_once() -> None:
    m = started()
    m.step(ProposalIn(1, 0, V, -1, "b", True))
    assert my_votes(votes(m, PREVOTE, 0, NIL, "bcd")) == [(PRECOMMIT, 0, NIL)]
    assert m.locked_round == -1


def test_line_47_a_quorum_of_mixed_precommits_arms_the_precommit_timeout_in_any_step() -> None:
    m = started()
    out = votes(m, PRECOMMIT, 0, NIL, "b") + votes(m, PRECOMMIT, 0, V, "c") + votes(m, PRECOMMIT, 0, W, "d")
    assert m.step_ == PROPOSE
    armed = [a for a in out if isinstance(a, ScheduleTimeout)]
    assert armed == [ScheduleTimeout(PRECOMMIT, 1, 0, m.timeouts.of(PRECOMMIT, 0))]
    m.step(TimeoutIn(PRECOMMIT, 1, 0))  # line 65: the next round
    assert (m.round, m.step_) == (1, PROPOSE)


# -- lines 36-43: lock on a quorum of prevotes -------------------------------------------

def test_line_36_the_lock_is_taken_once_per_round_and_only_from_the_prevote_step() -> None:
    m = started()
    m.step(ProposalIn(1, 0, V, -1, "b", True))
    out = votes(m, PREVOTE, 0, V, "abc")
    assert my_votes(out) == [(PRECOMMIT, 0, V)]
    assert (m.locked_value, m.locked_round, m.valid_value, m.valid_round) == (V, 0, V, 0)
    assert my_votes(votes(m, PREVOTE, 0, V, "d")) == []  # "for the first time"


def test_line_36_needs_a_valid_proposal() -> None:
    m = started()
    m.step(ProposalIn(1, 0, V, -1, "b", False))
    out = votes(m, PREVOTE, 0, V, "bcd")
    assert my_votes(out) == []
    assert (m.locked_round, m.valid_round) == (-1, -1)


# -- lines 49-54: decide ------------------------------------------------------------------

def test_line_49_decides_on_an_earlier_rounds_proposal_and_precommits() -> None:
    """``a`` has moved on to round 2 when round 0's precommits reach it: it decides
    round 0's value all the same (the paper's rule names any round r)."""
    m = started()
    votes(m, PREVOTE, 2, NIL, "cd")  # f + 1 of round 2: skip
    assert m.round == 2
    m.step(ProposalIn(1, 0, V, -1, "b", True))
    out = votes(m, PRECOMMIT, 0, V, "bcd")
    (d,) = [a for a in out if isinstance(a, Decide)]
    assert (d.height, d.round, d.value) == (1, 0, V)
    assert [n for n, _ in d.precommits] == ["b", "c", "d"]


def test_line_49_no_decision_for_an_invalid_value() -> None:
    m = started()
    m.step(ProposalIn(1, 0, V, -1, "b", False))
    votes(m, PRECOMMIT, 0, V, "bcd")
    assert m.decided is None


def test_a_new_height_starts_unlocked() -> None:
    m = locked_on_v_in_round_0()
    m.step(ProposalIn(1, 1, V, -1, "c", True))
    votes(m, PRECOMMIT, 1, V, "bcd")
    assert m.decided == V
    m.step(Start(2))
    assert (m.height, m.round, m.locked_round, m.valid_round, m.decided) == (2, 0, -1, -1, None)
    proposer = VS.proposer(2, 0)
    assert my_votes(m.step(ProposalIn(2, 0, W, -1, proposer, True))) == [(PREVOTE, 0, W)]


# -- lines 55-56: skip to a later round ---------------------------------------------------

def test_line_55_any_message_counts_toward_the_skip() -> None:
    m = started()
    votes(m, PRECOMMIT, 5, NIL, "bc")
    assert m.round == 5
    m = started()
    proposer = VS.proposer(1, 5)
    m.step(ProposalIn(1, 5, V, -1, proposer, True))
    assert m.round == 0
    voter = next(n for n in "bcd" if n != proposer)
    votes(m, PREVOTE, 5, V, voter)
    assert m.round == 5


def test_line_55_one_validator_sending_every_kind_of_message_is_not_enough() -> None:
    m = started()
    votes(m, PREVOTE, 5, NIL, "c")
    votes(m, PRECOMMIT, 5, NIL, "c")
    m.step(ProposalIn(1, 5, V, -1, "c", True))
    assert VS.proposer(1, 5) == "c" and m.round == 0


# -- lines 57-65: timeouts ------------------------------------------------------------------

def test_line_57_a_propose_timeout_after_the_prevote_changes_nothing() -> None:
    m = started()
    m.step(ProposalIn(1, 0, V, -1, "b", True))
    assert m.step(TimeoutIn(PROPOSE, 1, 0)) == []
    assert m.step_ == PREVOTE


def test_line_61_a_prevote_timeout_after_the_precommit_changes_nothing() -> None:
    m = started()
    m.step(ProposalIn(1, 0, V, -1, "b", True))
    votes(m, PREVOTE, 0, V, "abc")
    assert m.step_ == PRECOMMIT
    assert m.step(TimeoutIn(PROPOSE, 1, 0)) == []
    assert m.step(TimeoutIn(PREVOTE, 1, 0)) == []
    assert m.step_ == PRECOMMIT


def test_timeouts_of_another_round_or_height_change_nothing() -> None:
    m = started()
    votes(m, PREVOTE, 1, NIL, "bc")
    assert m.round == 1
    assert m.step(TimeoutIn(PROPOSE, 1, 0)) == []
    assert m.step(TimeoutIn(PRECOMMIT, 1, 0)) == []
    assert m.step(TimeoutIn(PRECOMMIT, 2, 1)) == []
    assert (m.round, m.step_) == (1, PROPOSE)


def test_timeouts_grow_with_the_round_for_every_step() -> None:
    t = Machine(VS, "a").timeouts
    for step in (PROPOSE, PREVOTE, PRECOMMIT):
        assert t.of(step, 0) < t.of(step, 1) < t.of(step, 5)
