"""HSM-backed signing over PKCS#11, against a real SoftHSM2 token made in a temporary directory.

The module fixture writes a ``softhsm2.conf`` whose token directory lies under pytest's
tmp path, points ``SOFTHSM2_CONF`` at it, initialises tokens with ``softhsm2-util`` and
only then loads the module in this process (SoftHSM2 reads its configuration and scans
its tokens when the module is initialised).  Everything else goes through
``signer.pkcs11``, ``signer.load_signer`` and ``lambtrace.cli.main`` exactly as an
operator would use them; signatures are checked by the ledger's own verifier.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SOFTHSM_MODULE = os.environ.get("LAMBTRACE_PKCS11_MODULE") or "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_UTIL = shutil.which("softhsm2-util")
if not Path(SOFTHSM_MODULE).is_file() or SOFTHSM_UTIL is None:
    pytest.skip(
        f"SoftHSM2 is not installed (need the module {SOFTHSM_MODULE} and softhsm2-util on PATH): "
        "these tests sign on a real PKCS#11 token; install the Debian package softhsm2 (CI does)",
        allow_module_level=True,
    )
pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed in this environment")

from helpers import OFFICE, Served, World  # noqa: E402
from lambtrace.cli import main  # noqa: E402
from ledger import sigs  # noqa: E402
from ledger.hashing import key_id as ledger_key_id  # noqa: E402
from signer import (  # noqa: E402
    Signer,
    SignerError,
    load_key_file,
    load_public_key,
    load_signer,
    public_key_record,
    save_public_key_file,
)
from signer import pkcs11 as p11  # noqa: E402
from test_rejections_http import A, base, to_plant  # noqa: E402

USER_PIN = "246810-user"
SO_PIN = "13579-officer"
TOKENS = ("lt-main", "lt-pin", "lt-locked", "lt-lost")
CKF_USER_PIN_LOCKED = 0x00040000
_TOKEN_FLAGS_ATTR = bytes.fromhex("000000008000534b" "0000000000000002")
"""SoftHSM2's file store: attribute CKA_OS_TOKENFLAGS, kind 'unsigned long', then the value."""


@dataclass
class Hsm:
    """The SoftHSM2 set-up the tests share."""

    root: Path
    conf: Path
    tokens: Path
    pin_file: Path
    so_pin_file: Path

    def spec(self, token: str = "lt-main", label: str | None = None, *, pin_file: Path | None = None,
             extra: str = "") -> str:
        parts = [f"pkcs11:module={SOFTHSM_MODULE}", f"token={token}"]
        if label is not None:
            parts.append(f"object={label}")
        parts.append(f"pin-file={pin_file or self.pin_file}")
        return ";".join(parts) + extra


def _softhsm_init(label: str, env: dict[str, str]) -> None:
    assert SOFTHSM_UTIL is not None
    # Test-only: the PINs go on softhsm2-util's command line here (lambtrace itself never does that).
    subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN],
                   check=True, capture_output=True, env=env, timeout=60)


def _token_object(tokens: Path, label: str) -> Path:
    padded = label.encode().ljust(32, b" ")
    for path in tokens.glob("*/token.object"):
        if padded in path.read_bytes():
            return path
    raise AssertionError(f"no token {label} under {tokens}")


def _set_pin_locked(tokens: Path, label: str) -> None:
    """Mark the token's user PIN locked in SoftHSM2's file store.

    SoftHSM2 counts wrong PINs but never locks a PIN itself; a hardware token does.  So
    the flag a locked token would report is written into the token's state file (with
    its generation counter bumped so a running module re-reads it).
    """
    path = _token_object(tokens, label)
    data = bytearray(path.read_bytes())
    at = data.index(_TOKEN_FLAGS_ATTR) + len(_TOKEN_FLAGS_ATTR)
    (flags,) = struct.unpack(">Q", data[at : at + 8])
    data[at : at + 8] = struct.pack(">Q", flags | CKF_USER_PIN_LOCKED)
    (generation,) = struct.unpack(">Q", data[:8])
    data[:8] = struct.pack(">Q", generation + 1)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hsm]:
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin_file = root / "pin"
    pin_file.write_text(USER_PIN + "\n")
    so_pin_file = root / "so-pin"
    so_pin_file.write_text(SO_PIN + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        for name in (p11.ENV_PIN, p11.ENV_PIN_FILE, p11.ENV_MODULE):
            mp.delenv(name, raising=False)
        env = dict(os.environ)
        for label in TOKENS:
            _softhsm_init(label, env)
        _set_pin_locked(tokens, "lt-locked")
        p11.close_all()  # the module must be (re)initialised with this configuration
        yield Hsm(root, conf, tokens, pin_file, so_pin_file)
        p11.close_all()


@pytest.fixture(scope="module")
def keys(hsm: Hsm) -> dict[str, p11.Pkcs11Signer]:
    """One key of each algorithm on ``lt-main``, generated on the token."""
    return {
        "ecdsa-p256": p11.generate_key(hsm.spec("lt-main", "ec-key"), "ecdsa-p256"),
        "ed25519": p11.generate_key(hsm.spec("lt-main", "ed-key"), "ed25519"),
    }


# --- specs (pure) ------------------------------------------------------------------------------


def test_spec_parsing_brief_and_rfc7512_forms() -> None:
    s = p11.parse_spec(
        "pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=plant-01;object=slaughter-key;pin-env=LT_PIN")
    assert (s.module, s.token, s.label, s.pin) == (
        "/usr/lib/softhsm/libsofthsm2.so", "plant-01", "slaughter-key", p11.PinSource(env="LT_PIN"))
    r = p11.parse_spec("PKCS11:token=My%20Token;object=k;id=%01%02;type=private"
                       "?module-path=/opt/hsm/lib.so&pin-source=file:/run/secrets/pin")
    assert (r.module, r.token, r.label, r.object_id, r.pin.file) == (
        "/opt/hsm/lib.so", "My Token", "k", b"\x01\x02", "/run/secrets/pin")
    # A locator never holds a PIN source; to_uri keeps the source's name or path only.
    full = p11.parse_spec(r.to_uri())
    assert full == r
    assert "pin" not in r.locator() and p11.parse_spec(r.locator()).pin == p11.PinSource()
    assert p11.parse_spec("pkcs11:token=t", environ={p11.ENV_MODULE: "/x.so"}).module == "/x.so"
    assert p11.parse_spec("pkcs11:token=t", environ={}).module == p11.DEFAULT_MODULE


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ("pkcs12:token=t", "unsupported_spec"),
        ("pkcs11:token=t;object=k?pin-value=secret-123", "unsupported_spec"),
        ("pkcs11:token=t;object=k;pin-value=secret-123", "unsupported_spec"),
        ("pkcs11:object=k", "unsupported_spec"),
        ("pkcs11:token=t;token=u", "unsupported_spec"),
        ("pkcs11:token=t;colour=blue", "unsupported_spec"),
        ("pkcs11:token=t;slot-id=3", "unsupported_spec"),
        ("pkcs11:token=t;object=", "unsupported_spec"),
        ("pkcs11:token=t;object", "unsupported_spec"),
        ("pkcs11:token=t;object=k;secret-123", "unsupported_spec"),
        ("pkcs11:token=t;type=public", "unsupported_spec"),
        ("pkcs11:token=t;pin-env=A;pin-file=/p", "unsupported_spec"),
        ("pkcs11:token=t;pin-env=1BAD", "unsupported_spec"),
        ("pkcs11:token=%ff", "unsupported_spec"),
        ("pkcs11:token=a%0ab", "unsupported_spec"),
        ("pkcs11:token=" + "x" * 33, "unsupported_spec"),
        ("pkcs11:token=t;alg=rsa", "unsupported_alg"),
    ],
)
def test_bad_specs_have_a_code_and_never_echo_values(spec: str, code: str) -> None:
    with pytest.raises(SignerError) as exc:
        p11.parse_spec(spec)
    assert exc.value.code == code
    assert "secret-123" not in exc.value.message and "blue" not in exc.value.message


# --- signing on the token ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", sigs.ALGS)
def test_sign_and_verify_with_the_ledger_verifier(keys: dict[str, p11.Pkcs11Signer], alg: str) -> None:
    signer = keys[alg]
    assert (signer.alg, signer.storage) == (alg, "hsm")
    assert len(signer.public_key) == sigs.PUBLIC_KEY_SIZES[alg]
    sigs.check_public_key(alg, signer.public_key)
    assert signer.key_id == ledger_key_id(alg, signer.public_key)
    for i in range(64):
        message = b"lambtrace/event/v1\x00" + hashlib.sha256(i.to_bytes(4, "big")).digest() * (i % 5)
        signature = signer.sign(message)
        assert len(signature) == 64
        assert sigs.verify_signature(alg, signer.public_key, message, signature)
        assert not sigs.verify_signature(alg, signer.public_key, message + b"x", signature)
        if alg == "ecdsa-p256":
            # Raw CKM_ECDSA output is high-S about half the time; the signer must normalise.
            assert sigs.is_low_s(signature)
    # sign() is annotated ``bytes`` but documented (and checked here) to take any bytes-like
    assert signer.sign(bytearray(b"m")) and signer.sign(memoryview(b"m"))
    with pytest.raises(TypeError):
        signer.sign("text")  # type: ignore[arg-type]


def test_ed25519_signatures_are_deterministic(keys: dict[str, p11.Pkcs11Signer]) -> None:
    ed = keys["ed25519"]
    assert ed.sign(b"same") == ed.sign(b"same")


def test_load_signer_opens_pkcs11_specs(hsm: Hsm, keys: dict[str, p11.Pkcs11Signer]) -> None:
    for alg, made in keys.items():
        again = load_signer(made.locator + f";pin-file={hsm.pin_file}")
        assert isinstance(again, p11.Pkcs11Signer) and isinstance(again, Signer)
        assert (again.alg, again.public_key, again.key_id, again.storage) == (alg, made.public_key, made.key_id, "hsm")
        assert sigs.verify_signature(alg, made.public_key, b"m", again.sign(b"m"))
    by_label = load_signer(hsm.spec("lt-main", "ec-key"))
    assert by_label.key_id == keys["ecdsa-p256"].key_id
    with pytest.raises(SignerError) as exc:
        load_signer(hsm.spec("lt-main", "ec-key", extra=";alg=ed25519"))
    assert exc.value.code == "hsm_key_mismatch"


def test_generated_keys_stay_on_the_token(hsm: Hsm, keys: dict[str, p11.Pkcs11Signer]) -> None:
    listed = {k.label: k for k in p11.list_keys(hsm.spec("lt-main"))}
    for alg, signer in keys.items():
        info = listed[signer.label]
        assert (info.alg, info.key_id, info.public_key) == (alg, signer.key_id, signer.public_key.hex())
        assert info.sensitive is True and info.extractable is False
        assert info.object_id == signer.key_id  # CKA_ID is the ledger key id
    with pytest.raises(SignerError) as exc:
        p11.generate_key(hsm.spec("lt-main", "ec-key"), "ecdsa-p256")
    assert exc.value.code == "hsm_key_exists"
    with pytest.raises(SignerError) as exc:
        p11.generate_key(hsm.spec("lt-main", "x"), "rsa")
    assert exc.value.code == "unsupported_alg"


def test_public_key_export_for_enrolment(tmp_path: Path, keys: dict[str, p11.Pkcs11Signer]) -> None:
    for alg, signer in keys.items():
        record = public_key_record(signer)
        assert record == {"alg": alg, "pub": signer.public_key, "storage": "hsm"} == signer.record()
        assert signer.public().to_record() == record
        path = tmp_path / f"{alg}.json"
        save_public_key_file(signer.public(), path, locator=signer.locator)
        doc = json.loads(path.read_text())
        assert doc["private_key"] is None and doc["encryption"] is None and doc["storage"] == "hsm"
        assert doc["locator"] == signer.locator and "pin" not in doc["locator"]
        assert load_public_key(path).key_id == signer.key_id
        with pytest.raises(SignerError) as exc:
            load_key_file(path)
        assert exc.value.code == "key_file_invalid"


def test_concurrent_signing_from_eight_threads(keys: dict[str, p11.Pkcs11Signer]) -> None:
    failures: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(60):
                signer = keys[sigs.ALGS[(t + i) % 2]]
                message = f"thread {t} message {i}".encode()
                signature = signer.sign(message)
                if not sigs.verify_signature(signer.alg, signer.public_key, message, signature):
                    failures.append(f"{t}/{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert not failures, failures


def test_a_lost_session_is_reopened_and_the_signature_retried(hsm: Hsm) -> None:
    signer = p11.generate_key(hsm.spec("lt-lost", "k"), "ecdsa-p256")
    other = p11.generate_key(hsm.spec("lt-lost", "k2"), "ed25519")
    link = signer._link
    assert other._link is link  # one logged-in session per token, shared
    epoch = link.epoch
    assert link._session is not None  # generate_key logged in
    link._session.close()  # logs out and closes the session under both signers
    message = b"after the session was lost"
    assert sigs.verify_signature(signer.alg, signer.public_key, message, signer.sign(message))
    assert sigs.verify_signature(other.alg, other.public_key, message, other.sign(message))
    assert link.epoch > epoch
    # The reopen reads the PIN again: without it the second attempt fails with a clear code.
    assert link._session is not None  # the signatures above reopened it
    link._session.close()
    hidden = hsm.root / "pin-moved-away"
    os.rename(hsm.pin_file, hidden)
    try:
        with pytest.raises(SignerError) as exc:
            signer.sign(message)
        assert exc.value.code == "hsm_pin_missing"
    finally:
        os.rename(hidden, hsm.pin_file)
    assert sigs.verify_signature(signer.alg, signer.public_key, message, signer.sign(message))


# --- every error code --------------------------------------------------------------------------


def _code(spec: str, **kw: Any) -> str:
    with pytest.raises(SignerError) as exc:
        p11.Pkcs11Signer.open(spec, **kw)
    assert USER_PIN not in exc.value.message and SO_PIN not in exc.value.message
    return exc.value.code


def test_missing_module(hsm: Hsm, tmp_path: Path) -> None:
    assert _code(f"pkcs11:module={tmp_path}/absent.so;token=lt-main;object=ec-key") == "hsm_module_missing"
    not_a_module = tmp_path / "not-a-module.so"
    not_a_module.write_text("hello")
    assert _code(f"pkcs11:module={not_a_module};token=lt-main;object=ec-key") == "hsm_module_missing"


def test_missing_token(hsm: Hsm) -> None:
    assert _code(hsm.spec("no-such-token", "ec-key")) == "hsm_token_missing"
    assert _code(f"pkcs11:module={SOFTHSM_MODULE};serial=0000000000000000;object=k") == "hsm_token_missing"


def test_wrong_pin_then_right_pin(hsm: Hsm, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("000000-not-it\n")
    assert _code(hsm.spec("lt-pin", "k", pin_file=wrong)) == "hsm_pin_incorrect"
    made = p11.generate_key(hsm.spec("lt-pin", "k"), "ecdsa-p256")
    assert sigs.verify_signature(made.alg, made.public_key, b"m", made.sign(b"m"))


def test_missing_pin_source(hsm: Hsm, keys: dict[str, p11.Pkcs11Signer], monkeypatch: pytest.MonkeyPatch) -> None:
    base_spec = f"pkcs11:module={SOFTHSM_MODULE};token=lt-main;object=ec-key"
    monkeypatch.delenv("LT_TEST_PIN", raising=False)
    assert _code(base_spec + ";pin-env=LT_TEST_PIN") == "hsm_pin_missing"
    assert _code(base_spec + f";pin-file={hsm.root}/absent") == "hsm_pin_missing"
    assert _code(base_spec) == "hsm_pin_missing"
    monkeypatch.setenv("LT_TEST_PIN", USER_PIN)
    assert load_signer(base_spec + ";pin-env=LT_TEST_PIN").key_id == keys["ecdsa-p256"].key_id
    monkeypatch.setenv(p11.ENV_PIN_FILE, str(hsm.pin_file))
    assert load_signer(base_spec).key_id == keys["ecdsa-p256"].key_id


def test_locked_pin(hsm: Hsm) -> None:
    assert _code(hsm.spec("lt-locked", "k")) == "hsm_pin_locked"
    tokens = {t.label: t for t in p11.list_tokens(SOFTHSM_MODULE)}
    assert tokens["lt-locked"].pin_locked and not tokens["lt-main"].pin_locked


def test_missing_key(hsm: Hsm, keys: dict[str, p11.Pkcs11Signer]) -> None:
    assert _code(hsm.spec("lt-main", "no-such-key")) == "hsm_key_missing"
    assert _code(hsm.spec("lt-main", "ec-key", extra=";id=%00%01")) == "hsm_key_missing"
    assert _code(hsm.spec("lt-main")) == "unsupported_spec"  # names no key at all


def test_mechanism_the_token_lacks(hsm: Hsm, keys: dict[str, p11.Pkcs11Signer]) -> None:
    # SoftHSM2 can be told to offer fewer mechanisms; it reads that when the module loads,
    # so the restricted module runs in a process of its own, over the same token directory.
    conf = hsm.root / "softhsm2-no-sign.conf"
    # (SoftHSM2 2.6 skips the first name of a "-" list, so a harmless one leads.)
    conf.write_text(hsm.conf.read_text() + "slots.mechanisms = -CKM_MD5,CKM_ECDSA,CKM_EDDSA\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    for label in ("ec-key", "ed-key"):
        r = subprocess.run(
            [sys.executable, "-m", "lambtrace", "hsm", "test-sign", "--module", SOFTHSM_MODULE, "--token", "lt-main",
             "--label", label, "--pin-file", str(hsm.pin_file)],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert r.returncode == 2, r.stdout + r.stderr
        assert "error: hsm_mechanism_unsupported:" in r.stderr
        assert USER_PIN not in r.stderr + r.stdout


def test_error_mapping_covers_what_softhsm_cannot_provoke() -> None:
    import pkcs11.exceptions as e

    assert p11._hsm_error(e.PinLocked(), "login").code == "hsm_pin_locked"
    assert p11._hsm_error(e.MechanismInvalid(), "sign").code == "hsm_mechanism_unsupported"
    assert p11._hsm_error(e.DeviceRemoved(), "sign").code == "hsm_token_missing"
    assert p11._hsm_error(e.DeviceError(), "sign").code == "hsm_error"
    assert set(p11.CODES) >= {"hsm_module_missing", "hsm_token_missing", "hsm_pin_incorrect", "hsm_pin_locked",
                              "hsm_key_missing", "hsm_mechanism_unsupported"}


# --- lambtrace hsm ...  ------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else out), err


def test_hsm_commands(hsm: Hsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = ("--module", SOFTHSM_MODULE)
    pin = ("--pin-file", str(hsm.pin_file))
    rc, out, err = _cli(capsys, "hsm", "init-token", *mod, "--label", "lt-cli", *pin,
                        "--so-pin-file", str(hsm.so_pin_file))
    assert rc == 0, err
    assert out["token"]["label"] == "lt-cli" and out["token"]["user_pin_initialized"]
    rc, out, err = _cli(capsys, "hsm", "init-token", *mod, "--label", "lt-cli", *pin,
                        "--so-pin-file", str(hsm.so_pin_file))
    assert rc == 2 and "error: hsm_token_exists:" in err

    # no user PIN given at all: the message names the command's options, not only a spec's
    rc, out, err = _cli(capsys, "hsm", "init-token", *mod, "--label", "lt-nopin", "--so-pin-file",
                        str(hsm.so_pin_file))
    assert rc == 2 and "error: hsm_pin_missing:" in err and "--pin-file" in err

    key_file = tmp_path / "plant.pub.json"
    rc, out, err = _cli(capsys, "hsm", "keygen", *mod, "--token", "lt-cli", "--label", "slaughter-key", *pin,
                        "--out", str(key_file))
    assert rc == 0, err
    assert (out["alg"], out["storage"], out["key_file"]) == ("ecdsa-p256", "hsm", str(key_file))
    assert out["key_id"] == ledger_key_id("ecdsa-p256", bytes.fromhex(out["pub"]))
    doc = json.loads(key_file.read_text())
    assert doc["private_key"] is None and doc["storage"] == "hsm" and doc["locator"] == out["locator"]
    assert "pin" not in doc["locator"]

    rc, listed, err = _cli(capsys, "hsm", "list", *mod)
    assert rc == 0, err
    assert {"lt-main", "lt-cli"} <= {t["label"] for t in listed["tokens"]}
    rc, listed, err = _cli(capsys, "hsm", "list", *mod, "--token", "lt-cli", *pin)
    assert rc == 0, err
    assert [(k["label"], k["key_id"], k["extractable"]) for k in listed["keys"]] == [
        ("slaughter-key", out["key_id"], False)]

    rc, pub, err = _cli(capsys, "hsm", "pubkey", "--spec", doc["locator"], *pin, "--out", str(tmp_path / "again.json"))
    assert rc == 0, err
    assert (pub["pub"], pub["key_id"]) == (out["pub"], out["key_id"])
    rc, _, err = _cli(capsys, "hsm", "pubkey", "--spec", doc["locator"], *pin, "--out", str(tmp_path / "again.json"))
    assert rc == 2 and "exists" in err

    rc, signed, err = _cli(capsys, "hsm", "test-sign", *mod, "--token", "lt-cli", "--label", "slaughter-key", *pin,
                           "--count", "20")
    assert rc == 0, err
    assert signed["verified"] is True and signed["signatures"] == 20

    rc, out, err = _cli(capsys, "hsm", "test-sign", *mod, "--token", "lt-nope", "--label", "k", *pin)
    assert rc == 2 and "error: hsm_token_missing:" in err
    rc, out, err = _cli(capsys, "hsm", "keygen", *mod, "--token", "lt-cli", "--label", "ed", "--alg", "ed25519", *pin)
    assert rc == 0 and out["alg"] == "ed25519", err


def test_no_option_takes_a_pin(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["hsm", "keygen", "--token", "t", "--label", "k", "--pin", USER_PIN],
                 ["hsm", "init-token", "--label", "t", "--so-pin", SO_PIN, "--pin-file", "/p"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


# --- the ledger insists on HSM keys for slaughter -------------------------------------------


def test_slaughter_needs_an_hsm_key_over_http(hsm: Hsm, capsys: pytest.CaptureFixture[str]) -> None:
    w = World(hsm=True)
    s = Served(w.new_node())
    try:
        plant_key = p11.generate_key(hsm.spec("lt-main", "plant-h"), "ecdsa-p256")
        w.keys["plant-h"] = plant_key  # type: ignore[assignment]
        enroll = w.ev("actor.enroll", OFFICE, {"id": "plant-h", "role": "plant", "banner": "152502",
                                                "keys": [public_key_record(plant_key)]})
        setup = [*base(w), enroll, *to_plant(w)]
        assert all(r["status"] == "accepted" for r in s.submit(setup)), s.submit(setup)
        s.commit()
        # The plant "plant" holds a software key: its slaughter attestation is refused.
        (refused,) = s.submit([w.slaughter("plant", A, "c-1")])
        assert (refused["status"], refused["code"]) == ("rejected", "hsm_required")
        # A software key that merely claims to be the HSM plant's key is not its key.
        (forged,) = s.submit([w.ev("lamb.slaughter", "plant-h", w.slaughter("plant", A, "c-1")["event"]["body"],
                                   signer=w.keys["plant"])])
        assert forged["status"] == "rejected"
        # The plant enrolled with its HSM key receives the lamb and slaughters it.
        assert all(r["status"] == "accepted"
                   for r in s.submit([w.ship("plant", "shp-h", "plant-h", [A]), w.receive("plant-h", "shp-h")]))
        s.commit()
        body = w.slaughter("plant-h", A, "c-h")["event"]["body"]
        argv = ["submit", "--url", s.url, "--key", plant_key.locator + f";pin-file={hsm.pin_file}",
                "--actor", "plant-h", "--kind", "lamb.slaughter", "--body", json.dumps(body),
                "--time", str(w.now), "--chain", w.chain]
        rc = main(argv)
        out, err = capsys.readouterr()
        assert rc == 0, out + err
        assert json.loads(out)["status"] == "accepted"
        s.commit()
        actor = s.http.get(f"{s.url}/v1/actors/plant-h", timeout=10).json()
        assert [k["storage"] for k in actor["keys"]] == ["hsm"]
        assert actor["keys"][0]["kid"] == plant_key.key_id
    finally:
        s.close()


def test_a_validator_node_signs_blocks_with_its_hsm_key(hsm: Hsm, tmp_path: Path) -> None:
    """A node process whose config names a pkcs11: key commits blocks whose certificate
    the token signed (with several validators the double-sign guard file stays in the
    node's data directory, outside the token: node/consensus.py FileGuard)."""
    import sys
    import time as _time

    import requests

    from api.client import Client
    from helpers import OFFICE, World, free_port, wait_until
    from lambtrace.config import NodeConfig, genesis_to_json
    from ledger.blocks.certificate import CommitCertificate, verify_commit
    from ledger.genesis import Genesis, Params, Validator
    from signer import public_key_record

    node_key = p11.generate_key(hsm.spec("lt-main", "validator-key"), "ed25519")
    w = World(now=int(_time.time() * 1000))
    g = Genesis(chain=w.chain, time=w.now - 60_000,
                validators=(Validator("league", "152500", "ed25519", node_key.public_key, 1),),
                trace_office={"id": OFFICE, "banner": "152500", "keys": [public_key_record(w.keys[OFFICE])]},
                params=Params())
    w.genesis = Genesis.from_dict(g.to_dict())
    (tmp_path / "genesis.json").write_text(genesis_to_json(w.genesis))
    port = free_port()
    cfg = NodeConfig(name="league", genesis=tmp_path / "genesis.json", data=tmp_path / "data",
                     listen=f"127.0.0.1:{port}", key=hsm.spec("lt-main", "validator-key"))
    cfg.save(tmp_path / "config.json")
    assert NodeConfig.load(tmp_path / "config.json").key == hsm.spec("lt-main", "validator-key")
    proc = subprocess.Popen([sys.executable, "-m", "lambtrace", "node", "--config", str(tmp_path / "config.json")],
                            env=dict(os.environ, SOFTHSM2_CONF=str(hsm.conf)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(url + "/healthz", timeout=1).ok
            except requests.RequestException:
                return False

        assert wait_until(up, 30)
        (r,) = Client(url).submit([w.enroll("coop", "cooperative", "152523")], wait=True)
        assert r.get("state") == "committed", r
        block = Client(url).block(1)
        cert = CommitCertificate.from_dict({
            "height": block["certificate"]["height"], "round": block["certificate"]["round"],
            "block": bytes.fromhex(block["certificate"]["block"]),
            "precommits": [{"validator": p["validator"], "sig": bytes.fromhex(p["sig"])}
                           for p in block["certificate"]["precommits"]]})
        verify_commit(cert, w.chain, 1, bytes.fromhex(block["hash"]), w.genesis.validators)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
