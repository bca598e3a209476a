"""Signers, key files and signature verification (ledger.sigs, signer/).

RFC 8032 vectors and their mutations are data in tests/vectors/rfc8032_ed25519.json.
Key-file tests use Argon2id's MIN limits so they run in milliseconds.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.pwhash.argon2id as argon2id
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

import signer
from ledger import hashing, sigs
from ledger.errors import LedgerError, Rejected
from signer import (
    PublicKey,
    Signer,
    SignerError,
    SoftwareSigner,
    load_key_file,
    load_public_key,
    load_signer,
    public_key_record,
    save_key_file,
    save_public_key_file,
)

VECTORS_PATH = Path(__file__).parent / "vectors" / "rfc8032_ed25519.json"
VECTORS_DOC: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
VECTORS: list[dict[str, str]] = VECTORS_DOC["vectors"]
MUTATIONS: list[dict[str, Any]] = VECTORS_DOC["mutations"]

ED25519_L = 2**252 + 27742317777372353535851937790883648493
N = sigs.P256_ORDER
FAST_KDF = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
PASS = "草原羊 correct horse"

ED_SIGNER = SoftwareSigner.generate("ed25519")
EC_SIGNER = SoftwareSigner.generate("ecdsa-p256")
SIGNERS = {"ed25519": ED_SIGNER, "ecdsa-p256": EC_SIGNER}


def _rs(sig: bytes) -> tuple[int, int]:
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")


def _raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _code(exc: pytest.ExceptionInfo[BaseException]) -> str:
    value = exc.value
    assert isinstance(value, LedgerError)
    return value.code


# --- RFC 8032 vectors ------------------------------------------------------------------------


def test_vector_file_is_complete() -> None:
    assert [v["name"] for v in VECTORS] == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    assert len(bytes.fromhex(VECTORS[3]["message"])) == 1023
    assert len(MUTATIONS) >= 20


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_rfc8032_sign_and_verify(vector: dict[str, str]) -> None:
    seed, pk = bytes.fromhex(vector["secret_key"]), bytes.fromhex(vector["public_key"])
    msg, sig = bytes.fromhex(vector["message"]), bytes.fromhex(vector["signature"])
    s = SoftwareSigner.from_private_bytes("ed25519", seed)
    assert s.public_key == pk
    assert s.key_id == hashing.key_id("ed25519", pk)
    assert s.sign(msg) == sig  # Ed25519 is deterministic: byte-exact
    assert sigs.verify_signature("ed25519", pk, msg, sig) is True
    assert SoftwareSigner.from_seed("ed25519", seed).public_key == pk


def _mutate(vector: dict[str, str], mutation: dict[str, Any]) -> tuple[bytes, bytes, bytes] | None:
    parts = {k: bytes.fromhex(vector[k]) for k in ("public_key", "message", "signature")}
    target = parts[mutation["target"]]
    op = mutation["op"]
    if op == "flip_bit":
        if not target:
            return None
        bit = mutation["bit"] % (8 * len(target))
        buf = bytearray(target)
        buf[bit // 8] ^= 1 << (bit % 8)
        new = bytes(buf)
    elif op == "truncate":
        length = mutation["length"]
        if length < 0 and len(target) < -length:
            return None
        new = target[:length]
        if new == target:
            return None
    elif op == "append":
        new = target + bytes.fromhex(mutation["data"])
    elif op == "replace":
        new = bytes.fromhex(mutation["data"])
    elif op == "swap_halves":
        new = target[32:] + target[:32]
    elif op == "add_group_order_to_s":
        s = int.from_bytes(target[32:], "little") + ED25519_L
        new = target[:32] + s.to_bytes(32, "little")
    else:  # pragma: no cover - a typo in the vector file
        raise AssertionError(f"unknown mutation op {op}")
    parts[mutation["target"]] = new
    return parts["public_key"], parts["message"], parts["signature"]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m["name"] for m in MUTATIONS])
def test_rfc8032_mutations_fail(mutation: dict[str, Any]) -> None:
    applied = 0
    for vector in VECTORS:
        mutated = _mutate(vector, mutation)
        if mutated is None:
            continue
        applied += 1
        pk, msg, sig = mutated
        assert sigs.verify_signature("ed25519", pk, msg, sig) is False, (vector["name"], mutation["name"])
    assert applied >= 4


# --- ecdsa-p256 ------------------------------------------------------------------------------


def test_ecdsa_round_trip() -> None:
    pk = EC_SIGNER.public_key
    assert len(pk) == 33 and pk[0] in (2, 3)
    sigs.check_public_key("ecdsa-p256", pk)
    msg = b"lambtrace/event/v1\x00" + b"lamb 315252300001234"
    sig = EC_SIGNER.sign(msg)
    assert len(sig) == sigs.SIGNATURE_SIZE
    assert sigs.verify_signature("ecdsa-p256", pk, msg, sig) is True
    assert sigs.verify_signature("ecdsa-p256", pk, msg + b"!", sig) is False
    # Interoperates with plain cryptography ECDSA over SHA-256.
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pk)
    key.verify(encode_dss_signature(*_rs(sig)), msg, ec.ECDSA(hashes.SHA256()))


def test_ecdsa_from_private_bytes_is_stable() -> None:
    raw = EC_SIGNER.private_bytes()
    again = SoftwareSigner.from_private_bytes("ecdsa-p256", raw)
    assert again.public_key == EC_SIGNER.public_key and again.key_id == EC_SIGNER.key_id
    for bad in (bytes(32), N.to_bytes(32, "big"), b"\xff" * 32, b"\x01" * 31):
        with pytest.raises(ValueError):
            SoftwareSigner.from_private_bytes("ecdsa-p256", bad)


def test_ecdsa_always_low_s() -> None:
    for i in range(300):
        r, s = _rs(EC_SIGNER.sign(i.to_bytes(4, "big")))
        assert 1 <= r < N
        assert 1 <= s <= N // 2


def test_ecdsa_high_s_rejected() -> None:
    msg = b"high-S"
    sig = EC_SIGNER.sign(msg)
    r, s = _rs(sig)
    high = _raw(r, N - s)
    pk = EC_SIGNER.public_key
    # A perfectly good ECDSA signature for plain ECDSA...
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pk)
    key.verify(encode_dss_signature(r, N - s), msg, ec.ECDSA(hashes.SHA256()))
    # ...that the ledger refuses, and that normalisation maps back.
    assert sigs.verify_signature("ecdsa-p256", pk, msg, high) is False
    assert sigs.is_low_s(sig) and not sigs.is_low_s(high)
    assert sigs.normalize_low_s(high) == sig
    assert sigs.normalize_low_s(sig) == sig


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (0, 0), (N, 1), (1, N), (N + 1, 5), (2**256 - 1, 1), (1, 2**256 - 1), (N // 2 + 1, N)],
)
def test_ecdsa_out_of_range_scalars_rejected(r: int, s: int) -> None:
    assert sigs.verify_signature("ecdsa-p256", EC_SIGNER.public_key, b"m", _raw(r, s)) is False


def test_ecdsa_r_or_s_swapped_in_from_valid_signature_rejected() -> None:
    msg = b"m"
    r, s = _rs(EC_SIGNER.sign(msg))
    for bad in (_raw(0, s), _raw(r, 0), _raw(N, s), _raw(r, N)):
        assert sigs.verify_signature("ecdsa-p256", EC_SIGNER.public_key, msg, bad) is False


def test_normalize_low_s_refuses_non_signatures() -> None:
    for bad in (b"", bytes(63), _raw(0, 1), _raw(1, 0), _raw(1, N), _raw(N, 1)):
        with pytest.raises(ValueError):
            sigs.normalize_low_s(bad)


# --- untrusted input never raises ------------------------------------------------------------


@pytest.mark.parametrize("alg", sigs.ALGS)
def test_wrong_sizes_and_types_are_false_not_exceptions(alg: str) -> None:
    s = SIGNERS[alg]
    msg = b"hello"
    sig, pk = s.sign(msg), s.public_key
    assert sigs.verify_signature(alg, pk, msg, sig) is True
    assert sigs.verify_signature(alg, bytearray(pk), memoryview(msg), bytearray(sig)) is True  # type: ignore[arg-type]
    bad_pks: list[Any] = [b"", pk[:-1], pk + b"\x00", bytes(len(pk)), b"\xff" * len(pk), None, "ab", 7]
    bad_sigs: list[Any] = [b"", sig[:-1], sig + b"\x00", sig * 2, None, sig.hex(), 0]
    for bad_pk in bad_pks:
        assert sigs.verify_signature(alg, bad_pk, msg, sig) is False
    for bad_sig in bad_sigs:
        assert sigs.verify_signature(alg, pk, msg, bad_sig) is False
    assert sigs.verify_signature(alg, pk, None, sig) is False  # type: ignore[arg-type]
    assert sigs.verify_signature(alg, pk, "hello", sig) is False  # type: ignore[arg-type]
    for other in ("", "ED25519", "ecdsa-p384", "rsa", None):
        assert sigs.verify_signature(other, pk, msg, sig) is False  # type: ignore[arg-type]


def test_signature_of_one_alg_does_not_verify_as_the_other() -> None:
    msg = b"x"
    assert sigs.verify_signature("ecdsa-p256", ED_SIGNER.public_key, msg, ED_SIGNER.sign(msg)) is False
    assert sigs.verify_signature("ed25519", EC_SIGNER.public_key, msg, EC_SIGNER.sign(msg)) is False
    assert sigs.verify_signature("ed25519", EC_SIGNER.public_key[1:], msg, EC_SIGNER.sign(msg)) is False


def _p256_x_not_on_curve() -> bytes:
    for x in range(1, 1000):
        candidate = b"\x02" + x.to_bytes(32, "big")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), candidate)
        except ValueError:
            return candidate
    raise AssertionError("no off-curve x found")  # pragma: no cover


ED_SMALL_ORDER = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")


def test_check_public_key() -> None:
    sigs.check_public_key("ed25519", ED_SIGNER.public_key)
    sigs.check_public_key("ecdsa-p256", EC_SIGNER.public_key)
    uncompressed = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), EC_SIGNER.public_key
    ).public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    mixed_order = nacl.bindings.crypto_core_ed25519_add(ED_SIGNER.public_key, ED_SMALL_ORDER)
    bad: list[tuple[str, Any]] = [
        ("ed25519", b""),
        ("ed25519", ED_SIGNER.public_key[:31]),
        ("ed25519", EC_SIGNER.public_key),
        ("ed25519", bytes(32)),
        ("ed25519", b"\x01" + bytes(31)),  # identity
        ("ed25519", ED_SMALL_ORDER),
        ("ed25519", mixed_order),
        ("ed25519", b"\xff" * 32),  # y >= p: non-canonical
        ("ecdsa-p256", ED_SIGNER.public_key),
        ("ecdsa-p256", uncompressed),
        ("ecdsa-p256", b"\x04" + EC_SIGNER.public_key[1:]),
        ("ecdsa-p256", b"\x00" * 33),
        ("ecdsa-p256", b"\x02" + b"\xff" * 32),  # x >= p
        ("ecdsa-p256", _p256_x_not_on_curve()),
        ("ecdsa-p256", "02" * 33),
        ("rsa", ED_SIGNER.public_key),
    ]
    for alg, pk in bad:
        with pytest.raises(Rejected) as exc:
            sigs.check_public_key(alg, pk)
        assert exc.value.code == "bad_key", (alg, pk)
        if isinstance(pk, bytes):
            # verify_signature accepts exactly the keys check_public_key accepts.
            assert sigs.verify_signature(alg, pk, b"m", bytes(64)) is False


def test_key_id_matches_ledger_hashing() -> None:
    for alg, s in SIGNERS.items():
        assert s.key_id == hashing.key_id(alg, s.public_key)
        assert len(s.key_id) == 32
        assert s.public().key_id == s.key_id


def test_signer_protocol_and_record() -> None:
    for alg, s in SIGNERS.items():
        assert isinstance(s, Signer)
        assert s.alg == alg and s.storage == "software"
        assert len(s.public_key) == sigs.PUBLIC_KEY_SIZES[alg]
        rec = public_key_record(s)
        assert rec == {"alg": alg, "pub": s.public_key, "storage": "software"}
        assert s.public().to_record() == rec
        assert s.private_bytes().hex() not in repr(s)
    assert signer.generate("ed25519").public_key != ED_SIGNER.public_key
    with pytest.raises(SignerError) as exc:
        SoftwareSigner.generate("rsa")
    assert exc.value.code == "unsupported_alg"
    with pytest.raises(TypeError):
        ED_SIGNER.sign("text")  # type: ignore[arg-type]
    assert issubclass(SignerError, LedgerError)


# --- key files -------------------------------------------------------------------------------


def _save(s: SoftwareSigner, path: Path, passphrase: str | bytes | None = PASS, **kw: Any) -> Path:
    save_key_file(s, path, passphrase=passphrase, **{**FAST_KDF, **kw})
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("alg", sigs.ALGS)
def test_key_file_round_trip_encrypted(tmp_path: Path, alg: str) -> None:
    s = SIGNERS[alg]
    path = _save(s, tmp_path / "actor.key")
    assert _mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "lambtrace-key/v1"
    assert doc["alg"] == alg and doc["storage"] == "software"
    assert doc["public_key"] == s.public_key.hex() and doc["key_id"] == s.key_id
    enc = doc["encryption"]
    assert enc["kdf"] == "argon2id" and enc["cipher"] == "xsalsa20poly1305"
    assert enc["opslimit"] == argon2id.OPSLIMIT_MIN and enc["memlimit"] == argon2id.MEMLIMIT_MIN
    assert "private_key" not in doc
    assert s.private_bytes().hex() not in path.read_text()
    loaded = load_key_file(path, passphrase=PASS)
    assert loaded.alg == alg and loaded.public_key == s.public_key and loaded.key_id == s.key_id
    assert loaded.private_bytes() == s.private_bytes()
    msg = b"round trip"
    assert sigs.verify_signature(alg, s.public_key, msg, loaded.sign(msg))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_default_kdf_is_interactive(tmp_path: Path) -> None:
    path = tmp_path / "k"
    save_key_file(ED_SIGNER, path, passphrase=b"pw")
    enc = json.loads(path.read_text())["encryption"]
    assert (enc["opslimit"], enc["memlimit"]) == (
        argon2id.OPSLIMIT_INTERACTIVE,
        argon2id.MEMLIMIT_INTERACTIVE,
    )
    with pytest.raises(ValueError):
        save_key_file(ED_SIGNER, tmp_path / "k2", passphrase="pw", strength="extreme")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        save_key_file(ED_SIGNER, tmp_path / "k3", passphrase="pw", opslimit=0)


def test_passphrase_unicode_normalisation(tmp_path: Path) -> None:
    path = _save(ED_SIGNER, tmp_path / "k", passphrase="caf\u00e9")
    assert load_key_file(path, passphrase="cafe\u0301").key_id == ED_SIGNER.key_id
    assert load_key_file(path, passphrase="caf\u00e9".encode()).key_id == ED_SIGNER.key_id


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = _save(EC_SIGNER, tmp_path / "k")
    for wrong in ("wrong", PASS + " ", b"", PASS.upper()):
        with pytest.raises(SignerError) as exc:
            load_key_file(path, passphrase=wrong)
        assert exc.value.code == "bad_passphrase"


def test_missing_passphrase(tmp_path: Path) -> None:
    path = _save(ED_SIGNER, tmp_path / "k")
    with pytest.raises(SignerError) as exc:
        load_key_file(path)
    assert exc.value.code == "passphrase_required"


def _tamper(path: Path, edit: Any) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _flip_hex(value: str, index: int = 0) -> str:
    raw = bytearray(bytes.fromhex(value))
    raw[index] ^= 0x01
    return raw.hex()


@pytest.mark.parametrize(
    ("name", "edit", "codes"),
    [
        (
            "ciphertext",
            lambda d: d["encryption"].update(ciphertext=_flip_hex(d["encryption"]["ciphertext"])),
            {"bad_passphrase", "key_file_invalid"},
        ),
        (
            "ciphertext_tag",
            lambda d: d["encryption"].update(ciphertext=_flip_hex(d["encryption"]["ciphertext"], -1)),
            {"bad_passphrase", "key_file_invalid"},
        ),
        (
            "nonce",
            lambda d: d["encryption"].update(nonce=_flip_hex(d["encryption"]["nonce"])),
            {"bad_passphrase"},
        ),
        (
            "salt",
            lambda d: d["encryption"].update(salt=_flip_hex(d["encryption"]["salt"])),
            {"bad_passphrase"},
        ),
        (
            "opslimit",
            lambda d: d["encryption"].update(opslimit=d["encryption"]["opslimit"] + 1),
            {"bad_passphrase"},
        ),
        ("opslimit_huge", lambda d: d["encryption"].update(opslimit=10**9), {"key_file_invalid"}),
        ("memlimit_huge", lambda d: d["encryption"].update(memlimit=2**42), {"key_file_invalid"}),
        ("opslimit_bool", lambda d: d["encryption"].update(opslimit=True), {"key_file_invalid"}),
        ("kdf", lambda d: d["encryption"].update(kdf="scrypt"), {"key_file_invalid"}),
        ("cipher", lambda d: d["encryption"].update(cipher="aes"), {"key_file_invalid"}),
        (
            "ciphertext_short",
            lambda d: d["encryption"].update(ciphertext=d["encryption"]["ciphertext"][:-2]),
            {"key_file_invalid"},
        ),
        (
            "ciphertext_upper",
            lambda d: d["encryption"].update(ciphertext=d["encryption"]["ciphertext"].upper()),
            {"key_file_invalid"},
        ),
        (
            "public_key",
            lambda d: d.update(public_key=SoftwareSigner.generate("ed25519").public_key.hex()),
            {"key_file_invalid"},
        ),
        (
            "public_key_and_key_id",
            lambda d: d.update(
                public_key=(k := SoftwareSigner.generate("ed25519")).public_key.hex(), key_id=k.key_id
            ),
            {"key_file_invalid"},
        ),
        ("key_id", lambda d: d.update(key_id="00" * 16), {"key_file_invalid"}),
        ("alg", lambda d: d.update(alg="ecdsa-p256"), {"key_file_invalid"}),
        ("alg_unknown", lambda d: d.update(alg="rsa"), {"unsupported_alg"}),
        ("storage", lambda d: d.update(storage="hsm"), {"key_file_invalid"}),
        ("format", lambda d: d.update(format="lambtrace-key/v2"), {"key_file_invalid"}),
        ("encryption_type", lambda d: d.update(encryption="yes"), {"key_file_invalid"}),
        ("both_private_forms", lambda d: d.update(private_key="00" * 32), {"key_file_invalid"}),
    ],
)
def test_tampered_key_file(tmp_path: Path, name: str, edit: Any, codes: set[str]) -> None:
    path = _save(ED_SIGNER, tmp_path / "k")
    _tamper(path, edit)
    with pytest.raises(SignerError) as exc:
        load_key_file(path, passphrase=PASS)
    assert exc.value.code in codes, name


def test_garbage_key_files(tmp_path: Path) -> None:
    cases = {
        "empty": b"",
        "not_json": b"hello",
        "array": b"[]",
        "nan": b'{"format": NaN}',
        "dup": b'{"format": "lambtrace-key/v1", "format": "lambtrace-key/v1"}',
        "latin1": b'{"format": "\xff"}',
        "huge": b" " * (70 * 1024),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for load in (lambda p: load_key_file(p, passphrase="x"), load_public_key):
            with pytest.raises(SignerError) as exc:
                load(path)
            assert exc.value.code == "key_file_invalid", name
    with pytest.raises(SignerError) as exc:
        load_key_file(tmp_path / "absent", passphrase="x")
    assert exc.value.code == "key_file_missing"
    with pytest.raises(SignerError) as exc:
        load_key_file(tmp_path, passphrase="x")  # a directory
    assert exc.value.code == "key_file_invalid"


@pytest.mark.parametrize("alg", sigs.ALGS)
def test_insecure_plain_round_trip(tmp_path: Path, alg: str) -> None:
    s = SIGNERS[alg]
    path = tmp_path / "demo.key"
    save_key_file(s, path, passphrase=None, insecure_plain=True)
    assert _mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert doc["encryption"] is None and doc["private_key"] == s.private_bytes().hex()
    assert load_key_file(path).key_id == s.key_id
    assert load_key_file(path, passphrase="ignored").key_id == s.key_id
    # A tampered clear private key no longer matches the stored public key.
    _tamper(path, lambda d: d.update(private_key=_flip_hex(d["private_key"], 5)))
    with pytest.raises(SignerError) as exc:
        load_key_file(path)
    assert exc.value.code == "key_file_invalid"


def test_plain_needs_explicit_flag(tmp_path: Path) -> None:
    for empty in (None, "", b""):
        with pytest.raises(SignerError) as exc:
            save_key_file(ED_SIGNER, tmp_path / "k", passphrase=empty)
        assert exc.value.code == "passphrase_required"
    assert not (tmp_path / "k").exists()
    # A passphrase given with insecure_plain still encrypts.
    _save(ED_SIGNER, tmp_path / "k", insecure_plain=True)
    assert json.loads((tmp_path / "k").read_text())["encryption"] is not None


def test_file_mode_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = _save(ED_SIGNER, tmp_path / "k")
        save_public_key_file(ED_SIGNER, tmp_path / "k.pub")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "k.pub") == 0o600


def test_no_silent_overwrite(tmp_path: Path) -> None:
    path = _save(ED_SIGNER, tmp_path / "k")
    with pytest.raises(FileExistsError):
        _save(EC_SIGNER, path)
    assert load_key_file(path, passphrase=PASS).key_id == ED_SIGNER.key_id
    _save(EC_SIGNER, path, overwrite=True)
    assert load_key_file(path, passphrase=PASS).key_id == EC_SIGNER.key_id
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def test_public_only_key_file(tmp_path: Path) -> None:
    hsm_pub = PublicKey(
        "ecdsa-p256", EC_SIGNER.public_key, storage="hsm", locator="pkcs11:token=plant-01;object=sign"
    )
    path = tmp_path / "plant.pub"
    save_public_key_file(hsm_pub, path)
    doc = json.loads(path.read_text())
    assert doc["encryption"] is None and doc["private_key"] is None and doc["storage"] == "hsm"
    loaded = load_public_key(path)
    assert loaded == hsm_pub
    assert loaded.key_id == EC_SIGNER.key_id
    assert loaded.to_record() == {"alg": "ecdsa-p256", "pub": EC_SIGNER.public_key, "storage": "hsm"}
    assert public_key_record(loaded) == loaded.to_record()
    for loader in (lambda: load_key_file(path, passphrase=PASS), lambda: load_signer(path)):
        with pytest.raises(SignerError) as exc:
            loader()
        assert exc.value.code == "key_file_invalid"
        assert "private key is not in this file" in exc.value.message
    # load_public_key also reads full key files, without a passphrase.
    full = _save(ED_SIGNER, tmp_path / "full.key")
    assert load_public_key(full) == ED_SIGNER.public()
    # A public-only file with a bad key or key id is invalid.
    _tamper(path, lambda d: d.update(public_key="02" + "ff" * 32))
    with pytest.raises(SignerError) as exc:
        load_public_key(path)
    assert exc.value.code == "key_file_invalid"


def test_public_key_validation() -> None:
    with pytest.raises(Rejected):
        PublicKey("ed25519", bytes(32))
    with pytest.raises(SignerError):
        PublicKey("rsa", bytes(32))
    with pytest.raises(ValueError):
        PublicKey("ed25519", ED_SIGNER.public_key, storage="cloud")


# --- load_signer -----------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(signer.ENV_PASSPHRASE, raising=False)
    monkeypatch.delenv(signer.ENV_PASSPHRASE_FILE, raising=False)
    return monkeypatch


def test_load_signer_with_env_passphrase(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = _save(EC_SIGNER, tmp_path / "k")
    with pytest.raises(SignerError) as exc:
        load_signer(str(path))
    assert exc.value.code == "passphrase_required"
    clean_env.setenv("LAMBTRACE_KEY_PASSPHRASE", PASS)
    s = load_signer(str(path))
    assert isinstance(s, Signer) and s.key_id == EC_SIGNER.key_id and s.storage == "software"
    assert sigs.verify_signature(s.alg, s.public_key, b"m", s.sign(b"m"))
    assert load_signer(path).key_id == EC_SIGNER.key_id  # PathLike
    # An explicit passphrase wins over the environment.
    with pytest.raises(SignerError) as exc:
        load_signer(path, passphrase="not it")
    assert exc.value.code == "bad_passphrase"


def test_load_signer_with_env_passphrase_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = _save(ED_SIGNER, tmp_path / "k")
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASS + "\n", encoding="utf-8")
    clean_env.setenv("LAMBTRACE_KEY_PASSPHRASE_FILE", str(pw_file))
    assert load_signer(path).key_id == ED_SIGNER.key_id
    pw_file.write_bytes(PASS.encode() + b"\r\n")
    assert load_signer(path).key_id == ED_SIGNER.key_id
    # The direct variable takes precedence over the file.
    clean_env.setenv("LAMBTRACE_KEY_PASSPHRASE", "wrong")
    with pytest.raises(SignerError) as exc:
        load_signer(path)
    assert exc.value.code == "bad_passphrase"
    clean_env.delenv("LAMBTRACE_KEY_PASSPHRASE")
    pw_file.write_bytes(b"\n")
    with pytest.raises(SignerError) as exc:
        load_signer(path)
    assert exc.value.code == "passphrase_required"
    clean_env.setenv("LAMBTRACE_KEY_PASSPHRASE_FILE", str(tmp_path / "absent"))
    with pytest.raises(SignerError) as exc:
        load_signer(path)
    assert exc.value.code == "passphrase_required"


def test_load_signer_plain_ignores_unreadable_env_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    path = tmp_path / "demo.key"
    save_key_file(ED_SIGNER, path, passphrase=None, insecure_plain=True)
    clean_env.setenv("LAMBTRACE_KEY_PASSPHRASE_FILE", str(tmp_path / "absent"))
    assert load_signer(path).key_id == ED_SIGNER.key_id


def test_load_signer_specs(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SignerError) as exc:
        load_signer("pkcs11:token=plant-01;object=sign?pin-value=123456")
    assert exc.value.code == "unsupported_spec"
    assert "signer/pkcs11.py" in exc.value.message
    assert "123456" not in exc.value.message
    with pytest.raises(SignerError) as exc:
        load_signer(tmp_path / "absent.key")
    assert exc.value.code == "key_file_missing"


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(alg=st.sampled_from(sigs.ALGS), message=st.binary(max_size=2048), bit=st.integers(min_value=0))
def test_any_message_signs_and_verifies_and_bit_flip_fails(alg: str, message: bytes, bit: int) -> None:
    s = SIGNERS[alg]
    sig = s.sign(message)
    assert len(sig) == sigs.SIGNATURE_SIZE
    assert sigs.verify_signature(alg, s.public_key, message, sig) is True
    if alg == "ecdsa-p256":
        assert sigs.is_low_s(sig)
    if message:
        i = bit % (8 * len(message))
        flipped = bytearray(message)
        flipped[i // 8] ^= 1 << (i % 8)
        assert sigs.verify_signature(alg, s.public_key, bytes(flipped), sig) is False
    assert sigs.verify_signature(alg, s.public_key, message + b"\x00", sig) is False


@settings(max_examples=60, deadline=None)
@given(alg=st.sampled_from(sigs.ALGS), message=st.binary(max_size=64), bit=st.integers(0, 511))
def test_signature_bit_flip_fails(alg: str, message: bytes, bit: int) -> None:
    s = SIGNERS[alg]
    sig = bytearray(s.sign(message))
    sig[bit // 8] ^= 1 << (bit % 8)
    assert sigs.verify_signature(alg, s.public_key, message, bytes(sig)) is False


@settings(max_examples=100, deadline=None)
@given(
    alg=st.sampled_from(sigs.ALGS),
    pk=st.binary(max_size=40),
    sig=st.binary(max_size=70),
    msg=st.binary(max_size=8),
)
def test_random_bytes_never_raise(alg: str, pk: bytes, sig: bytes, msg: bytes) -> None:
    assert sigs.verify_signature(alg, pk, msg, sig) is False
