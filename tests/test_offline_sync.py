"""Offline handheld sync (lambtrace.offline): terminals sign events for days with no
network, then upload them in ordered, idempotent, resumable batches."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from api.client import Client
from helpers import OFFICE, Served, World
from lambtrace import offline
from ledger.errors import TransportError
from ledger.events import parse_leaf
from signer import generate, public_key_record, save_key_file

DAY = 86_400_000
LAMBS = 30
PER_SHIPMENT = 5


class Net:
    """A served node whose clock the test moves (days pass while terminals are offline)."""

    def __init__(self) -> None:
        self.w = World()
        self.clock = self.w.now + 1000
        self.s = Served(self.w.new_node(clock=lambda: self.clock))
        w = self.w
        self.pda = generate("ed25519")  # the herder agent's terminal
        self.plant_pda = generate("ed25519")
        setup = [
            w.enroll("coop", "cooperative", "152523"),
            w.enroll("agent", "herder_agent", "152523", parent="coop"),
            w.enroll("plant", "plant", "152502"),
            w.issue("coop", "315252300000001", 100),
            w.ev("device.register", OFFICE, {"device": "pda-1", "owner": "agent", "key": public_key_record(self.pda)}),
            w.ev("device.register", OFFICE, {"device": "pda-p", "owner": "plant",
                                             "key": public_key_record(self.plant_pda)}),
        ]
        assert all(r["status"] == "accepted" for r in self.s.submit(setup))
        self.s.commit()

    def committed_counts(self) -> Counter[str]:
        store = self.s.node.store
        return Counter(parse_leaf(leaf).id.hex() for _i, leaf in store.leaves(0, store.log_size))

    def close(self) -> None:
        self.s.close()


@pytest.fixture
def net() -> Any:
    n = Net()
    yield n
    n.close()


def tag_body(tag: str) -> dict[str, Any]:
    return {"tag": tag, "herder": "h-0007", "born": "2026-03-10", "breed": "乌珠穆沁羊", "sex": "male",
            "sumu": "巴彦胡舒苏木"}


def record_season(n: Net, queue: Path, plant_queue: Path, *, start: int) -> list[str]:
    """The agent's terminal tags LAMBS lambs and ships them to the plant; the plant's
    terminal receives the shipments.  All offline, each event dated by the terminal."""
    w = n.w
    ids = []
    t = start
    tags = [f"3152523{i:08d}" for i in range(1, LAMBS + 1)]
    for k in range(0, LAMBS, PER_SHIPMENT):
        for tag in tags[k:k + PER_SHIPMENT]:
            t += 1000
            ids.append(offline.record_event(queue, n.pda, chain=w.chain, kind="lamb.tag", actor="agent",
                                            body=tag_body(tag), time_ms=t)[1])
        t += 1000
        ids.append(offline.record_event(queue, n.pda, chain=w.chain, kind="custody.ship", actor="agent", body={
            "shipment": f"shp-{k}", "to": "plant", "lambs": tags[k:k + PER_SHIPMENT]}, time_ms=t)[1])
    for k in range(0, LAMBS, PER_SHIPMENT):
        t += 1000
        ids.append(offline.record_event(plant_queue, n.plant_pda, chain=w.chain, kind="custody.receive",
                                        actor="plant", body={"shipment": f"shp-{k}"}, time_ms=t)[1])
    return ids


def assert_exactly_once(n: Net, ids: list[str]) -> None:
    counts = n.committed_counts()
    assert all(counts[i] == 1 for i in ids), [i for i in ids if counts[i] != 1]
    assert max(counts.values()) == 1
    lamb = n.s.http.get(f"{n.s.url}/v1/tags/315252300000001").json()
    assert json.dumps(lamb).count("plant") >= 1


def test_offline_batch_uploaded_twice_commits_each_event_once(net: Net, tmp_path: Path) -> None:
    q, pq = tmp_path / "pda-1", tmp_path / "pda-p"
    ids = record_season(net, q, pq, start=net.w.now + DAY)
    assert len(ids) == LAMBS + 2 * LAMBS // PER_SHIPMENT
    copy = tmp_path / "copy"
    shutil.copytree(q, copy)  # the same batch, as if the terminal had never heard back
    net.clock = net.w.now + 5 * DAY  # five days on the steppe
    client = Client(net.s.url)

    first = offline.sync(q, client, batch=8, progress=True)
    assert (first.sent, first.accepted, first.rejected, first.remaining) == (36, 36, 0, 0)
    assert first.batches == 5 and first.complete
    assert offline.sync(pq, client, batch=8).accepted == 6
    # again: nothing left to send
    again = offline.sync(q, client, batch=8)
    assert (again.sent, again.batches) == (0, 0)
    # the whole batch re-sent (a copy of the queue without its results): all duplicates
    dup = offline.sync(copy, client, batch=7)
    assert (dup.sent, dup.duplicate, dup.accepted, dup.rejected) == (36, 36, 0, 0)
    net.s.commit()
    dup2 = offline.sync(copy, client, batch=7, retry_rejected=True)
    assert dup2.sent == 0
    (copy / "results.jsonl").unlink()
    after_commit = offline.sync(copy, client, batch=50)
    assert after_commit.duplicate == 36 and all(r.get("state") == "committed" for r in after_commit.results)
    assert_exactly_once(net, ids)
    assert all(r["status"] in ("accepted", "duplicate") for r in offline.results(q).values())


class CutOff(Client):
    """Loses the answer of its ``cut``-th upload (the node took the batch) and then the
    network is gone: later uploads fail too."""

    def __init__(self, url: str, cut: int) -> None:
        super().__init__(url, retries=0)
        self.cut = cut
        self.calls = 0

    def submit(self, signed_events: Any, **kw: Any) -> list[dict[str, Any]]:
        self.calls += 1
        if self.calls > self.cut:
            raise TransportError("network is unreachable", code="transport_error")
        results = super().submit(signed_events, **kw)
        if self.calls == self.cut:
            raise TransportError("connection reset by peer", code="transport_error")
        return results


def test_sync_cut_off_halfway_resumes_and_commits_each_event_once(net: Net, tmp_path: Path) -> None:
    q, pq = tmp_path / "pda-1", tmp_path / "pda-p"
    ids = record_season(net, q, pq, start=net.w.now + DAY)
    net.clock = net.w.now + 3 * DAY
    with pytest.raises(TransportError):
        offline.sync(q, CutOff(net.s.url, cut=3), batch=5, progress=False)
    done = offline.results(q)
    assert sorted(done) == list(range(1, 11))  # two batches answered and recorded
    net.s.commit()  # blocks go on meanwhile
    # the process was killed while writing the results log: a torn last line
    with open(q / "results.jsonl", "a", encoding="utf-8") as f:
        f.write('{"seq": 11, "id": "ab')
    resumed = offline.sync(q, Client(net.s.url), batch=5, progress=False)
    assert resumed.sent == 26
    assert resumed.duplicate == 5  # the batch whose answer was lost
    assert resumed.accepted == 21 and resumed.rejected == 0
    assert [r["seq"] for r in resumed.results] == list(range(11, 37))  # in recorded order

    # the plant's terminal: the server goes away halfway through its upload
    net.s.commit()
    client = Client(net.s.url, retries=0)
    real_submit = client.submit
    calls = []

    def submit_then_die(events: Any, **kw: Any) -> list[dict[str, Any]]:
        calls.append(1)
        if len(calls) == 2:
            net.s.close()
        return real_submit(events, **kw)

    client.submit = submit_then_die  # type: ignore[method-assign,assignment]
    with pytest.raises(TransportError):
        offline.sync(pq, client, batch=2, progress=False)
    assert len(offline.results(pq)) == 2
    net.s = Served(net.s.node)  # the node comes back behind a new listener
    rest = offline.sync(pq, Client(net.s.url), batch=2, progress=False)
    assert (rest.sent, rest.accepted + rest.duplicate, rest.rejected) == (4, 4, 0)
    net.s.commit()
    assert_exactly_once(net, ids)


def test_too_late_and_partial_acceptance_are_reported(net: Net, tmp_path: Path) -> None:
    w = net.w
    q = tmp_path / "pda-1"
    old = offline.record_event(q, net.pda, chain=w.chain, kind="lamb.tag", actor="agent",
                               body=tag_body("315252300000001"), time_ms=w.now + 1000)[1]
    good = offline.record_event(q, net.pda, chain=w.chain, kind="lamb.tag", actor="agent",
                                body=tag_body("315252300000002"), time_ms=w.now + 2 * DAY)[1]
    stray = offline.record_event(q, net.pda, chain=w.chain, kind="lamb.tag", actor="agent",
                                 body=tag_body("315252300009999"), time_ms=w.now + 2 * DAY + 1)[1]
    ship = offline.record_event(q, net.pda, chain=w.chain, kind="custody.ship", actor="agent", body={
        "shipment": "shp-1", "to": "plant", "lambs": ["315252300000002"]}, time_ms=w.now + 2 * DAY + 2)[1]
    net.clock = w.now + 30 * DAY + 5000  # the first event is now 30 days and 4 s old
    rep = offline.sync(q, Client(net.s.url), batch=10, progress=False)
    assert (rep.accepted, rep.rejected, rep.remaining) == (2, 2, 0) and not rep.complete
    by_id = {r["id"]: r for r in rep.results}
    assert (by_id[old]["status"], by_id[old]["code"]) == ("rejected", "too_late")
    assert by_id[stray]["code"] == "tag_not_issued"
    assert by_id[good]["status"] == by_id[ship]["status"] == "accepted"
    assert [r["code"] for r in rep.to_dict()["rejections"]] == ["too_late", "tag_not_issued"]
    # rejections are final: a later sync does not send them again, unless asked to
    assert offline.sync(q, Client(net.s.url), progress=False).sent == 0
    retry = offline.sync(q, Client(net.s.url), progress=False, retry_rejected=True)
    assert (retry.sent, retry.rejected) == (2, 2)
    net.s.commit()
    counts = net.committed_counts()
    assert counts[good] == counts[ship] == 1 and counts[old] == counts[stray] == 0


def test_record_checks_chain_and_structure(tmp_path: Path) -> None:
    from ledger.errors import LedgerError, Rejected

    w = World()
    key = generate("ed25519")
    q = tmp_path / "q"
    offline.record_event(q, key, chain="chain-a", kind="custody.receive", actor="agent", body={"shipment": "s"})
    with pytest.raises(LedgerError, match="chain"):
        offline.record_event(q, key, chain="chain-b", kind="custody.receive", actor="agent", body={"shipment": "s"})
    with pytest.raises(Rejected):
        offline.record(q, {"event": w.tag("agent", "315252300000001", signer=key)["event"], "sigs": []})
    assert [s for s, _p in offline.pending(q)] == [1]


def test_device_record_and_sync_commands(net: Net, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lambtrace.cli import main

    w = net.w
    keyfile = tmp_path / "pda.json"
    save_key_file(net.pda, keyfile, passphrase=None, insecure_plain=True)
    q = tmp_path / "queue"
    for i, t in ((1, w.now + 1000), (2, w.now + DAY), (3, w.now + DAY + 1)):
        rc = main(["device", "record", "--queue", str(q), "--key", str(keyfile), "--actor", "agent",
                   "--kind", "lamb.tag", "--body", json.dumps(tag_body(f"3152523{i:08d}")),
                   "--time", str(t)] + (["--chain", w.chain] if i == 1 else []))
        assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in out] == [1, 2, 3]
    net.clock = w.now + 30 * DAY + 5000
    rc = main(["device", "sync", "--queue", str(q), "--url", net.s.url, "--batch", "2"])
    cap = capsys.readouterr()
    assert rc == 1  # partially accepted
    report = json.loads(cap.out)
    assert (report["accepted"], report["rejected"], report["batches"]) == (2, 1, 2)
    assert "too_late" in cap.err and "sync" in cap.err  # the rejection and the progress bar
    rc = main(["device", "sync", "--queue", str(q), "--url", net.s.url, "--no-progress"])
    again = json.loads(capsys.readouterr().out)
    assert rc == 0 and again["sent"] == 0
    assert again["queue"] == {"events": 3, "done": 2, "rejected": 1, "pending": 0}
