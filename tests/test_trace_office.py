"""Trace-office operations: terminal filing, retirement and quotas; tag issuance and
listing; the ``lambtrace tags|devices`` commands — all over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import OFFICE, Served, World
from ledger.genesis import Genesis, Params
from signer import generate, public_key_record, save_key_file

B = "315252300000002"


def _world(terminal_quotas: dict[str, int] | None = None) -> World:
    w = World()
    if terminal_quotas is not None:
        d = w.genesis.to_dict()
        d["params"]["terminal_quotas"] = terminal_quotas
        w.genesis = Genesis.from_dict(d)
    return w


def _base(w: World) -> list[dict[str, Any]]:
    return [
        w.enroll("bo", "banner_office", "152523"),
        w.enroll("bo2", "banner_office", "152524"),
        w.enroll("coop", "cooperative", "152523"),
        w.enroll("agent", "herder_agent", "152523", parent="coop"),
        w.enroll("coop2", "cooperative", "152524"),
        w.issue("coop", "315252300000001", 100),
    ]


def _register(w: World, device: str, owner: str, signer_actor: str = OFFICE,
              t: int | None = None) -> tuple[Any, dict[str, Any]]:
    key = generate("ed25519")
    return key, w.ev("device.register", signer_actor, {"device": device, "owner": owner,
                                                      "key": public_key_record(key), "model": "PDA-7"}, t=t)


@pytest.fixture
def served() -> Any:
    w = _world({"152523": 2})
    s = Served(w.new_node())
    assert all(r["status"] == "accepted" for r in s.submit(_base(w)))
    s.commit()
    yield w, s
    s.close()


def test_terminal_signs_for_its_owner_until_retired(served: Any) -> None:
    w, s = served
    key, reg = _register(w, "pda-1", "agent", t=w.now - 10_000)
    assert s.submit([reg])[0]["status"] == "accepted"
    s.commit()
    (ok,) = s.submit([w.tag("agent", "315252300000001", signer=key)])
    assert ok["status"] == "accepted", ok
    s.commit()
    lamb = s.http.get(f"{s.url}/v1/tags/315252300000001").json()
    assert json.dumps(lamb).count("agent") >= 1  # the terminal's event counts for its owner

    # a banner office retires only its own banner's terminals
    (wrong,) = s.submit([w.ev("device.retire", "bo2", {"device": "pda-1", "reason": "lost"})])
    assert (wrong["status"], wrong["code"]) == ("rejected", "wrong_banner")
    (retired,) = s.submit([w.ev("device.retire", "bo", {"device": "pda-1", "reason": "lost on the steppe"})])
    assert retired["status"] == "accepted", retired
    s.commit()
    (again,) = s.submit([w.ev("device.retire", OFFICE, {"device": "pda-1", "reason": "lost"}, t=w.now + 1)])
    assert (again["status"], again["code"]) == ("rejected", "device_retired")
    # nothing more from the retired terminal, not even an event dated before the retirement
    (late,) = s.submit([w.ev("lamb.tag", "agent", w.tag("agent", B)["event"]["body"], signer=key, t=w.now - 1)])
    assert (late["status"], late["code"]) == ("rejected", "device_retired")
    (unknown,) = s.submit([w.ev("device.retire", OFFICE, {"device": "pda-x", "reason": "lost"})])
    assert (unknown["status"], unknown["code"]) == ("rejected", "unknown_device")
    # the owner's own key still signs
    assert s.submit([w.tag("agent", B)])[0]["status"] == "accepted"

    actor = s.http.get(f"{s.url}/v1/actors/agent").json()
    (dev,) = actor["devices"]
    assert dev["device"] == "pda-1" and dev["retired_at"] == w.now and dev["retired_reason"] == "lost on the steppe"


def test_terminal_quota_counts_terminals_in_service(served: Any) -> None:
    w, s = served
    regs = [_register(w, f"pda-{i}", owner)[1] for i, owner in enumerate(["agent", "coop", "coop"])]
    res = s.submit(regs)
    assert [r["status"] for r in res] == ["accepted", "accepted", "rejected"]
    assert res[2]["code"] == "device_quota_exceeded"
    # another banner has no quota
    assert s.submit([_register(w, "pda-9", "coop2")[1]])[0]["status"] == "accepted"
    s.commit()
    # retiring a lost terminal frees its slot for the replacement
    assert s.submit([w.ev("device.retire", OFFICE, {"device": "pda-0", "reason": "lost"})])[0]["status"] == "accepted"
    assert s.submit([_register(w, "pda-3", "agent")[1]])[0]["status"] == "accepted"
    assert s.submit([_register(w, "pda-4", "agent")[1]])[0]["code"] == "device_quota_exceeded"


def test_terminal_quotas_in_genesis_keep_old_hashes() -> None:
    assert "terminal_quotas" not in Params().to_dict()
    w = World()
    d = w.genesis.to_dict()
    assert Genesis.from_dict(d).hash == w.genesis.hash
    d["params"]["terminal_quotas"] = {"152523": 5}
    g = Genesis.from_dict(d)
    assert g.params.terminal_quotas == {"152523": 5} and g.hash != w.genesis.hash
    assert Genesis.decode(g.encode()) == g
    d["params"]["terminal_quotas"] = {"999999": 5}
    with pytest.raises(Exception, match="terminal_quotas"):
        Genesis.from_dict(d)


def test_tag_ranges_route(served: Any) -> None:
    w, s = served
    assert s.submit([w.issue("coop2", "315252400000001", 10), w.issue("coop", "315252300001000", 5)])
    s.commit()
    every = s.http.get(f"{s.url}/v1/tags").json()
    assert [r["first"] for r in every["ranges"]] == ["315252300000001", "315252300001000", "315252400000001"]
    mine = s.http.get(f"{s.url}/v1/tags", params={"to": "coop"}).json()
    assert [(r["first"], r["last"], r["count"]) for r in mine["ranges"]] == [
        ("315252300000001", "315252300000100", 100), ("315252300001000", "315252300001004", 5)]
    assert mine["ranges"][0]["banner_issued_that_year"] == 105
    assert s.http.get(f"{s.url}/v1/tags", params={"to": "bad id!"}).status_code == 400
    assert s.http.get(f"{s.url}/v1/tags", params={"limit": "1"}).json()["truncated"] is True
    zero = s.http.get(f"{s.url}/v1/tags", params={"limit": "0"})
    assert zero.status_code == 400 and zero.json()["error"]["code"] == "bad_param"


# -- the commands ----------------------------------------------------------------------


def _keyfile(tmp_path: Path, name: str, signer: Any) -> str:
    path = tmp_path / f"{name}.json"
    save_key_file(signer, path, passphrase=None, insecure_plain=True)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from lambtrace.cli import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_tags_and_devices_commands(served: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w, s = served
    office = _keyfile(tmp_path, "office", w.keys[OFFICE])
    bo = _keyfile(tmp_path, "bo", w.keys["bo"])
    pda = _keyfile(tmp_path, "pda", generate("ed25519"))
    t = str(w.now + 10)

    rc, out, err = run(capsys, "tags", "issue", "--url", s.url, "--key", office, "--actor", OFFICE, "--to", "coop",
                       "--first", "315252300005000", "--count", "50", "--year", "2026", "--time", t)
    assert rc == 0, err
    assert json.loads(out)["status"] == "accepted"
    rc, out, err = run(capsys, "tags", "issue", "--url", s.url, "--key", office, "--actor", OFFICE, "--to", "coop",
                       "--first", "315252300005010", "--count", "5", "--year", "2026", "--time", t)
    assert rc == 1 and "tag_range_overlap" in err
    s.commit()
    rc, out, _ = run(capsys, "tags", "list", "--url", s.url, "--to", "coop")
    assert rc == 0 and [r["first"] for r in json.loads(out)["ranges"]] == ["315252300000001", "315252300005000"]

    rc, out, err = run(capsys, "devices", "register", "--url", s.url, "--key", bo, "--actor", "bo",
                       "--device", "pda-cli", "--owner", "agent", "--device-key", pda, "--model", "PDA-7",
                       "--time", t)
    assert rc == 0, err
    s.commit()
    rc, out, _ = run(capsys, "devices", "list", "--url", s.url, "--owner", "agent")
    assert [d["device"] for d in json.loads(out)["devices"]] == ["pda-cli"]
    rc, out, err = run(capsys, "devices", "retire", "--url", s.url, "--key", bo, "--actor", "bo",
                       "--device", "pda-cli", "--reason", "lost", "--time", str(w.now + 20))
    assert rc == 0, err
    s.commit()
    rc, out, _ = run(capsys, "devices", "list", "--url", s.url, "--owner", "agent")
    assert json.loads(out)["devices"] == []
    rc, out, _ = run(capsys, "devices", "list", "--url", s.url, "--owner", "agent", "--all")
    assert json.loads(out)["devices"][0]["retired_at"] == w.now + 20
    rc, out, err = run(capsys, "devices", "retire", "--url", s.url, "--key", bo, "--actor", "bo",
                       "--device", "pda-cli", "--reason", "lost", "--time", str(w.now + 30))
    assert rc == 1 and "device_retired" in err
