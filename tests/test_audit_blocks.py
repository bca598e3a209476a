"""The audit's block checks, one by one: each header and certificate rule broken alone.

tests/test_audit.py breaks chains the way the world does (a flipped byte on disk, a
forged event signature, a rewritten history). Here a test validator re-certifies a
season's blocks after changing exactly one thing, so that the chain stays valid in every
other respect, and the audit must name that one thing at that height: the block's
height, chain, validator set, proposer, state root, ``prev`` link, time, log size and
root, and its certificate's height, block, precommit names (unknown, repeated, out of
order), signatures and power. Every certificate the audit refuses, the check that block
sync, the witness and the label verifiers share (:func:`verify_commit`) refuses too, and
every certificate the audit accepts, that check accepts. The witness's own checks of a
checkpoint (:func:`verify_checkpoint`, :func:`check_extension`) are broken one by one on
the same chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_audit import raw_blocks

from helpers_api import ApiWorld
from ledger import codec
from ledger.blocks.certificate import CommitCertificate, sign_commit, verify_commit
from ledger.blocks.header import Header
from ledger.errors import LedgerError, VerificationError
from ledger.genesis import Genesis, Validator
from node.kv import MemoryKV
from signer import generate
from verify import errors as VE
from verify.audit import RawBlock, audit_chain
from verify.witness import Checkpoint, check_extension, verify_checkpoint

NAMES = ("v0", "v1", "v2", "v3")
AT = 5  # the height every case breaks

Edit = Callable[[dict[str, Any], dict[str, Any]], None]
"""Edits block ``AT``'s header value; the second argument is the block before it."""


class Forger:
    """A season's blocks, re-certified under a genesis of four validators whose keys the
    test holds (same chain id, time, trace office and parameters: the events stay valid)."""

    def __init__(self, recall_map: bool = True) -> None:
        w = ApiWorld(MemoryKV(), recall_map=recall_map)
        w.season()
        self.blocks = list(raw_blocks(w.store))
        assert len(self.blocks) > AT + 1
        self.signers = {n: generate("ed25519") for n in NAMES}
        g = w.genesis.to_dict()
        g["validators"] = [Validator(n, "152500", "ed25519", s.public_key, 1).to_dict()
                           for n, s in self.signers.items()]
        self.genesis = Genesis.from_dict(g)
        w.node.stop()

    def chain(self, header_edit: Edit | None = None, *, cert: Callable[[Header], Any] | None = None,
              skip: bool = False, at: int = AT) -> list[RawBlock]:
        """The blocks re-linked and re-certified by v0..v2; at height ``at`` the header is
        edited before it is certified (``header_edit``), or the certificate is made by
        ``cert(header)``, or the block is left out (``skip``)."""
        out: list[RawBlock] = []
        prev = self.genesis.hash
        before: dict[str, Any] = {}
        for raw in self.blocks:
            h = raw.height
            if skip and h == at:
                continue
            d = codec.decode(raw.header)
            d.update(prev=prev, validators=self.genesis.validators_hash, proposer="v0")
            if h == at and header_edit is not None:
                header_edit(d, before)
            header, before = Header(**d), d
            if h == at and cert is not None:
                c = cert(header)
                c_value = c.encode() if isinstance(c, CommitCertificate) else codec.encode(c)
            else:
                c_value = self.sign(header.height, header.hash, NAMES[:3]).encode()
            out.append(RawBlock(h, header.encode(), c_value, raw.leaves))
            prev = header.hash
        return out

    def sign(self, height: int, block: bytes, names: tuple[str, ...], round_: int = 0) -> CommitCertificate:
        return sign_commit(self.genesis.chain, height, round_, block, [(n, self.signers[n]) for n in names])


@pytest.fixture(scope="module")
def forger() -> Forger:
    return Forger()


def failure(forger: Forger, blocks: list[RawBlock]) -> dict[str, Any]:
    report = audit_chain(blocks, forger.genesis)
    assert not report.intact and report.failure is not None
    return report.failure


def test_the_recertified_chain_is_intact(forger: Forger) -> None:
    """The baseline every case departs from: re-linked and certified by three of four."""
    report = audit_chain(forger.chain(), forger.genesis)
    assert report.intact, report.failure
    assert report.height == len(forger.blocks) and report.events > 0


def _set(field: str, value: Any) -> Edit:
    def edit(d: dict[str, Any], _before: dict[str, Any]) -> None:
        d[field] = value
    return edit


def _drop(field: str) -> Edit:
    def edit(d: dict[str, Any], _before: dict[str, Any]) -> None:
        del d[field]
    return edit


def _shift(field: str, by: int) -> Edit:
    def edit(d: dict[str, Any], _before: dict[str, Any]) -> None:
        d[field] += by
    return edit


def _time_of_the_block_before(by: int) -> Edit:
    def edit(d: dict[str, Any], before: dict[str, Any]) -> None:
        d["time"] = before["time"] + by
    return edit


HEADER_CASES: dict[str, tuple[Edit, str, str]] = {
    "height": (_shift("height", 1), "bad_header", f"stored for block {AT} says height {AT + 1}"),
    "chain": (_set("chain", "another-chain"), "chain_mismatch", "names chain"),
    "validator set": (_set("validators", bytes(32)), "chain_mismatch", "another validator set"),
    "proposer": (_set("proposer", "v9"), "bad_header", "is not a validator"),
    "state root left out": (_drop("state_root"), "bad_header", "has no state_root"),
    "state root changed": (_set("state_root", b"\x01" * 32), "state_mismatch", "state_root is not the root"),
    "prev": (_set("prev", bytes(32)), "broken_link", f"prev is not the hash of block {AT - 1}"),
    "time of the block before": (_time_of_the_block_before(0), "bad_header", "time does not move forward"),
    "time before the block before": (_time_of_the_block_before(-1), "bad_header", "time does not move forward"),
    "log size": (_shift("log_size", 1), "log_mismatch", "claims log size"),
    "log root": (_set("log_root", bytes(32)), "log_mismatch", "log root is not the root"),
}


@pytest.mark.parametrize("case", HEADER_CASES)
def test_one_header_field_broken(forger: Forger, case: str) -> None:
    edit, code, words = HEADER_CASES[case]
    f = failure(forger, forger.chain(edit))
    assert (f["code"], f["height"]) == (code, AT), f
    assert words in f["message"], f


def test_block_1_at_the_genesis_time_passes_with_a_note(forger: Forger) -> None:
    """Validators require block 1 to be later than genesis; a single-validator node once
    dated it at the genesis time itself. The audit keeps such a chain intact (it broke no
    rule of its day) and says so; a block 1 before genesis fails."""
    assert audit_chain(forger.chain(), forger.genesis).notes == []
    at_genesis = audit_chain(forger.chain(_set("time", forger.genesis.time), at=1), forger.genesis)
    assert at_genesis.intact, at_genesis.failure
    assert [n for n in at_genesis.notes if "block 1 is dated at the genesis time" in n]
    f = failure(forger, forger.chain(_set("time", forger.genesis.time - 1), at=1))
    assert (f["code"], f["height"]) == ("bad_header", 1), f


def test_a_block_left_out(forger: Forger) -> None:
    f = failure(forger, forger.chain(skip=True))
    assert (f["code"], f["height"]) == ("bad_header", AT + 1), f
    assert f"expected block {AT}, got {AT + 1}" in f["message"]


def test_a_state_root_on_a_chain_without_the_recall_map() -> None:
    legacy = Forger(recall_map=False)
    assert audit_chain(legacy.chain(), legacy.genesis).intact
    f = failure(legacy, legacy.chain(_set("state_root", bytes(32))))
    assert (f["code"], f["height"]) == ("bad_header", AT) and "carries a state_root" in f["message"], f


def _precommits(names: tuple[str, ...], *, order: Callable[[list[Any]], list[Any]] = lambda p: p) -> Callable[
        [Forger, Header], Any]:
    def make(forger: Forger, header: Header) -> Any:
        c = forger.sign(header.height, header.hash, tuple(n for n in names if n in forger.signers)).to_dict()
        sigs = {p["validator"]: p["sig"] for p in c["precommits"]}
        c["precommits"] = order([{"validator": n, "sig": sigs.get(n, next(iter(sigs.values())))} for n in names])
        return c
    return make


def _flip_one(forger: Forger, header: Header) -> Any:
    c = forger.sign(header.height, header.hash, NAMES).to_dict()
    sig = c["precommits"][2]["sig"]
    c["precommits"][2]["sig"] = bytes([sig[0] ^ 1]) + sig[1:]
    return c


CERT_CASES: dict[str, tuple[Callable[[Forger, Header], Any], str | None, str]] = {
    "three of four": (_precommits(("v0", "v1", "v2")), None, ""),
    "four of four": (_precommits(NAMES), None, ""),
    "the other three": (_precommits(("v1", "v2", "v3")), None, ""),
    "two of four": (_precommits(("v0", "v1")), "insufficient_signatures", "hold 2 of 4 power"),
    "for another height": (lambda f, h: f.sign(h.height + 1, h.hash, NAMES), "bad_certificate",
                           f"certificate is for height {AT + 1}"),
    "for another block": (lambda f, h: f.sign(h.height, bytes(32), NAMES), "bad_certificate", "another header"),
    "signed in another round than it says": (
        lambda f, h: CommitCertificate(h.height, 0, h.hash, f.sign(h.height, h.hash, NAMES, round_=1).precommits),
        "bad_certificate", "does not verify"),
    "a precommit that does not verify": (_flip_one, "bad_certificate", "precommit of v2 does not verify"),
    "out of order": (_precommits(NAMES, order=lambda p: p[::-1]), "bad_certificate", "unsorted"),
    "one validator twice": (_precommits(("v0", "v1", "v1", "v2")), "bad_certificate", "repeated"),
    "an unknown validator": (_precommits(("v0", "v1", "v2", "v9")), "bad_certificate", "unknown"),
}


@pytest.mark.parametrize("case", CERT_CASES)
def test_certificates(forger: Forger, case: str) -> None:
    make, code, words = CERT_CASES[case]
    made: list[Any] = []

    def cert(header: Header) -> Any:
        made.append((header, make(forger, header)))
        return made[-1][1]

    blocks = forger.chain(cert=cert)
    report = audit_chain(blocks, forger.genesis)
    header, value = made[0]
    c = value if isinstance(value, CommitCertificate) else CommitCertificate.from_dict(value)
    shared: LedgerError | None = None
    try:
        verify_commit(c, forger.genesis.chain, AT, header.hash, forger.genesis.validators)
    except LedgerError as exc:
        shared = exc
    if code is None:
        assert report.intact, report.failure
        assert shared is None, shared
        return
    assert report.failure is not None, "the audit accepted it"
    assert (report.failure["code"], report.failure["height"]) == (code, AT), report.failure
    assert words in report.failure["message"], report.failure
    assert shared is not None, "verify_commit accepted a certificate the audit refuses"


# -- the witness's checkpoint checks, on the same chain ---------------------------------------


def _checkpoint_values(blocks: list[RawBlock], h: int) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = blocks[h - 1]
    return codec.decode(raw.header), codec.decode(raw.certificate)


def _certified(forger: Forger, d: dict[str, Any], names: tuple[str, ...] = NAMES[:3]) -> Checkpoint:
    header = Header(**d)
    return verify_checkpoint(d, forger.sign(header.height, header.hash, names).to_dict(), forger.genesis)


CHECKPOINT_CASES: dict[str, tuple[Callable[[dict[str, Any], dict[str, Any]], None], type[VerificationError], str]] = {
    "header without its chain": (lambda h, c: h.pop("chain"), VE.BadHeader, "does not parse"),
    "another chain": (lambda h, c: h.update(chain="another-chain"), VE.ChainMismatch, "another chain"),
    "another validator set": (lambda h, c: h.update(validators=bytes(32)), VE.ChainMismatch, "validator set"),
    "height 0": (lambda h, c: h.update(height=0), VE.BadHeader, "after genesis"),
    "before genesis": (lambda h, c: h.update(time=0), VE.BadHeader, "after genesis"),
    "certificate without precommits": (lambda h, c: c.pop("precommits"), VE.BadCertificate, "does not parse"),
    "precommits out of order": (lambda h, c: c.update(precommits=c["precommits"][::-1]), VE.BadCertificate,
                                "out of order"),
    "two precommits": (lambda h, c: c.update(precommits=c["precommits"][:2]), VE.InsufficientPower,
                       "more than 2/3"),
    "a precommit that does not verify": (
        lambda h, c: c["precommits"][0].update(sig=bytes(64)), VE.BadCertificate, "bad precommit signature"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_checkpoints_the_witness_refuses(forger: Forger, case: str) -> None:
    blocks = forger.chain()
    header, cert = _checkpoint_values(blocks, AT)
    assert verify_checkpoint(header, cert, forger.genesis).height == AT
    edit, cls, words = CHECKPOINT_CASES[case]
    edit(header, cert)
    with pytest.raises(cls) as e:
        verify_checkpoint(header, cert, forger.genesis)
    assert words in e.value.message


def test_the_witness_on_log_sizes(forger: Forger) -> None:
    """A later checkpoint whose log shrank, or stayed the same size with another root, is a
    fork; the same size with the same root (a block without events) is an advance."""
    blocks = forger.chain()
    trusted = verify_checkpoint(*_checkpoint_values(blocks, AT), forger.genesis)
    later, _ = _checkpoint_values(blocks, AT + 1)
    assert later["log_size"] > trusted.log_size
    empty = {**later, "log_size": trusted.log_size, "log_root": trusted.log_root}
    assert check_extension(trusted, _certified(forger, empty), []) == "advanced"
    other_root = {**empty, "log_root": bytes(32)}
    with pytest.raises(VE.ForkDetected, match="same log size with a different root"):
        check_extension(trusted, _certified(forger, other_root), [])
    shrunk = {**later, "log_size": trusted.log_size - 1}
    with pytest.raises(VE.ForkDetected, match="shrank"):
        check_extension(trusted, _certified(forger, shrunk), [])
