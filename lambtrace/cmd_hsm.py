"""``lambtrace hsm``: tokens and keys behind PKCS#11 (see docs/hsm.md).

A plant's key is made on its token and never leaves it; these commands set that up::

    lambtrace hsm init-token --label plant-01 --pin-file pin --so-pin-file so-pin   # SoftHSM2
    lambtrace hsm keygen     --token plant-01 --label slaughter-key --pin-file pin --out plant.pub.json
    lambtrace hsm list       [--token plant-01 --pin-file pin]
    lambtrace hsm pubkey     --token plant-01 --label slaughter-key --pin-file pin [--out FILE]
    lambtrace hsm test-sign  --token plant-01 --label slaughter-key --pin-file pin

PINs come from ``--pin-env NAME`` / ``--pin-file PATH`` (``--so-pin-env`` /
``--so-pin-file`` for the security officer PIN), else from ``LAMBTRACE_PKCS11_PIN`` or the
file named by ``LAMBTRACE_PKCS11_PIN_FILE``; there is deliberately no option that takes a
PIN itself.  The module is ``--module``, else ``LAMBTRACE_PKCS11_MODULE``, else SoftHSM2's
Debian path.  ``--spec`` takes a whole ``pkcs11:`` spec instead of ``--token``/``--label``.
Every command prints one JSON document; errors are ``error: <code>: <message>``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from ledger import sigs
from ledger.errors import LedgerError

TEST_MESSAGE = b"lambtrace/hsm-test-sign\x00"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hsm`` and its subcommands to the ``lambtrace`` parser's subparsers ``sub``."""
    hsm = sub.add_parser("hsm", help="PKCS#11 tokens and HSM-held keys (init-token, keygen, list, pubkey, test-sign)")
    cmds = hsm.add_subparsers(dest="hsm_command", required=True, metavar="HSM_COMMAND")

    s = cmds.add_parser("init-token", help="initialise a free slot's token (SoftHSM2 set-ups)")
    _module_option(s)
    s.add_argument("--label", required=True, help="token label (at most 32 bytes)")
    _pin_options(s)
    _pin_options(s, so=True)
    s.set_defaults(func=cmd_init_token)

    s = cmds.add_parser("keygen", help="generate a key pair on a token (private key never leaves it)")
    _key_options(s)
    s.add_argument("--alg", choices=sigs.ALGS, default=sigs.ALG_ECDSA_P256, help="default ecdsa-p256")
    _out_options(s)
    s.set_defaults(func=cmd_keygen)

    s = cmds.add_parser("list", help="list tokens, or with --token/--spec the keys on one token")
    _module_option(s)
    s.add_argument("--token", help="token label: list its keys (logs in)")
    s.add_argument("--serial", help="token serial (instead of or beside --token)")
    s.add_argument("--spec", help="a pkcs11: spec naming the token")
    _pin_options(s)
    s.set_defaults(func=cmd_list)

    s = cmds.add_parser("pubkey", help="print (or write) a token key's public key in the form enrolment needs")
    _key_options(s)
    _out_options(s)
    s.set_defaults(func=cmd_pubkey)

    s = cmds.add_parser("test-sign", help="sign a test message with a token key and verify it")
    _key_options(s)
    s.add_argument("--count", type=int, default=1, help="signatures to make (default 1)")
    s.set_defaults(func=cmd_test_sign)


def _module_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--module", help="PKCS#11 module (default $LAMBTRACE_PKCS11_MODULE or "
                                    "/usr/lib/softhsm/libsofthsm2.so)")


def _pin_options(p: argparse.ArgumentParser, *, so: bool = False) -> None:
    prefix, who = ("so-pin", "security officer PIN") if so else ("pin", "user PIN")
    group = p.add_mutually_exclusive_group(required=so)
    group.add_argument(f"--{prefix}-env", metavar="NAME", help=f"environment variable holding the {who}")
    group.add_argument(f"--{prefix}-file", metavar="PATH", help=f"file holding the {who}")


def _key_options(p: argparse.ArgumentParser) -> None:
    _module_option(p)
    p.add_argument("--token", help="token label")
    p.add_argument("--serial", help="token serial (instead of or beside --token)")
    p.add_argument("--label", help="key label (CKA_LABEL)")
    p.add_argument("--id", help="key id (CKA_ID) as hex")
    p.add_argument("--spec", help="a pkcs11: spec naming token and key (instead of --token/--label)")
    _pin_options(p)


def _out_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="also write a public-only key file (storage hsm, with the key's locator)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def _spec(args: argparse.Namespace, *, need_key: bool) -> Any:
    """The :class:`signer.pkcs11.Pkcs11Spec` the options name (PIN source included)."""
    from signer.pkcs11 import PinSource, Pkcs11Spec, parse_spec

    pin = PinSource(env=args.pin_env, file=args.pin_file)
    if args.spec:
        spec = parse_spec(args.spec)
        if args.pin_env or args.pin_file:
            spec = spec.with_pin(env=args.pin_env, file=args.pin_file)
        return spec
    if not args.token and not args.serial:
        raise LedgerError("name the token with --token LABEL (or --serial, or --spec)", code="bad_argument")
    label = getattr(args, "label", None)
    object_id = None
    if getattr(args, "id", None):
        try:
            object_id = bytes.fromhex(args.id)
        except ValueError:
            raise LedgerError("--id takes the key id as hex", code="bad_argument") from None
    if need_key and not label and object_id is None:
        raise LedgerError("name the key with --label LABEL (or --id, or --spec)", code="bad_argument")
    return Pkcs11Spec(
        module=args.module or os.environ.get("LAMBTRACE_PKCS11_MODULE") or "/usr/lib/softhsm/libsofthsm2.so",
        token=args.token,
        serial=args.serial,
        label=label,
        object_id=object_id,
        pin=pin,
    )


def _print(doc: dict[str, Any] | list[dict[str, Any]]) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2))


def _describe(signer: Any) -> dict[str, Any]:
    return {
        "alg": signer.alg,
        "pub": signer.public_key.hex(),
        "storage": signer.storage,
        "key_id": signer.key_id,
        "token": signer.token_label,
        "label": signer.label,
        "id": signer.object_id.hex() if signer.object_id else None,
        "locator": signer.locator,
    }


def _write_public(signer: Any, args: argparse.Namespace) -> str | None:
    if not args.out:
        return None
    from signer import save_public_key_file

    save_public_key_file(signer.public(), args.out, locator=signer.locator, overwrite=args.force)
    return str(args.out)


def cmd_init_token(args: argparse.Namespace) -> int:
    """``lambtrace hsm init-token``: initialise a free slot's token with the two PINs."""
    from signer.pkcs11 import PinSource, init_token

    info = init_token(
        args.label,
        pin=PinSource(env=args.pin_env, file=args.pin_file),
        so_pin=PinSource(env=args.so_pin_env, file=args.so_pin_file),
        module=args.module,
    )
    _print({"token": info.to_dict()})
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """``lambtrace hsm keygen``: a new key pair on the token; prints its public key and locator."""
    from signer.pkcs11 import generate_key

    spec = _spec(args, need_key=True)
    if spec.label is None:
        raise LedgerError("keygen needs a key label (--label, or object= in --spec)", code="bad_argument")
    signer = generate_key(spec, args.alg)
    out = _describe(signer)
    out["key_file"] = _write_public(signer, args)
    _print(out)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``lambtrace hsm list``: the module's tokens, or the keys on one token."""
    from signer.pkcs11 import list_keys, list_tokens

    if args.spec or args.token or args.serial:
        spec = _spec(args, need_key=False)
        _print({"token": spec.token or spec.serial, "keys": [k.to_dict() for k in list_keys(spec)]})
        return 0
    module = args.module or os.environ.get("LAMBTRACE_PKCS11_MODULE") or "/usr/lib/softhsm/libsofthsm2.so"
    _print({"module": module, "tokens": [t.to_dict() for t in list_tokens(module)]})
    return 0


def cmd_pubkey(args: argparse.Namespace) -> int:
    """``lambtrace hsm pubkey``: a token key's public key (``{"alg","pub","storage":"hsm"}``)."""
    from signer.pkcs11 import Pkcs11Signer

    signer = Pkcs11Signer.open(_spec(args, need_key=True))
    out = _describe(signer)
    out["key_file"] = _write_public(signer, args)
    _print(out)
    return 0


def cmd_test_sign(args: argparse.Namespace) -> int:
    """``lambtrace hsm test-sign``: sign a test message, verify it with the ledger's verifier."""
    from signer.pkcs11 import Pkcs11Signer

    if args.count < 1:
        raise LedgerError("--count must be at least 1", code="bad_argument")
    signer = Pkcs11Signer.open(_spec(args, need_key=True))
    ok = True
    t0 = time.perf_counter()
    for i in range(args.count):
        message = TEST_MESSAGE + i.to_bytes(8, "big")
        signature = signer.sign(message)
        ok = ok and sigs.verify_signature(signer.alg, signer.public_key, message, signature) and (
            signer.alg != sigs.ALG_ECDSA_P256 or sigs.is_low_s(signature)
        )
    elapsed = time.perf_counter() - t0
    out = _describe(signer)
    out.update({"signatures": args.count, "verified": ok, "signatures_per_s": round(args.count / elapsed, 1)})
    _print(out)
    if not ok:
        raise LedgerError("a token signature did not verify", code="hsm_signature_invalid")
    return 0
