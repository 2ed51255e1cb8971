"""`keys init`, `keys add`, `keys rotate`, `keys show`, and `codec-server`."""

from __future__ import annotations

import argparse
import asyncio
import json

from cli import args as arg
from cli.door import BadInput
from cli.render import console
from domain.vulnerability import parse_party
from infra import codec_server, logs
from infra.codec import EncryptionCodec
from infra.keys import KeyDirectory, KeyProblem

DEFAULT_UI_ORIGIN = "http://localhost:8233"


def ensure_development_keys(keys: KeyDirectory) -> None:
    """`up` and `demo` create a development key set on first run, and say where."""
    created = keys.init_development()
    if created:
        console.print(f"created development keys in [bold]{keys.path}[/bold] (not for production)")


async def cmd_keys_init(args: argparse.Namespace) -> int:
    keys = KeyDirectory(args.dir)
    created = keys.init_development()
    if args.json:
        print(json.dumps({"directory": str(keys.path), "created": [str(p) for p in created]}, indent=2))
        return 0
    for path in created:
        print(f"created {path}")
    print(f"keys in {keys.path} ({'nothing new' if not created else f'{len(created)} new'})")
    return 0


async def cmd_keys_add(args: argparse.Namespace) -> int:
    """Enrol one party (a new vendor, partner or sector): its public key goes into public-keys.json,
    which Treasury's clearinghouse reloads (and the operators pass into each new review)."""
    try:
        party = parse_party(args.party)
    except ValueError as e:
        raise BadInput(str(e)) from None
    keys = KeyDirectory(args.dir)
    public_key, private_file = keys.add_party(party, args.public_key, replace=args.replace)
    if args.json:
        out = {"party": party, "public_key": public_key, "public_keys_file": str(keys.public_file)}
        print(json.dumps({**out, "private_key_file": str(private_file) if private_file else None}, indent=2))
        return 0
    if private_file:
        print(f"created {private_file} (the private key: give it to {party} only)")
    print(f"enrolled {party} in {keys.public_file}")
    print(f"public key {public_key}")
    return 0


async def cmd_keys_rotate(args: argparse.Namespace) -> int:
    keys = KeyDirectory(args.dir)
    rotated = keys.payload_keyring().rotated()
    keys.write_payload_keyring(rotated)
    if args.json:
        print(json.dumps({"current": rotated.current, "keys": list(rotated.keys)}, indent=2))
        return 0
    print(f"payload key {rotated.current} is now current; {', '.join(rotated.keys)} still decode")
    return 0


async def cmd_keys_show(args: argparse.Namespace) -> int:
    keys = KeyDirectory(args.dir)
    ring = keys.payload_keyring()
    if args.json:
        parties = sorted(keys.public_keys())
        print(json.dumps({"directory": str(keys.path), "payload_keys": list(ring.keys), "current": ring.current,
                          "signing_parties": parties}, indent=2))  # fmt: skip
        return 0
    print(f"directory        {keys.path}")
    print(f"payload keys     {', '.join(ring.keys)} (current {ring.current})")
    print(f"signing parties  {', '.join(sorted(keys.public_keys()))}")
    return 0


async def serve_codec(keys: KeyDirectory, host: str, port: int, origins: list[str], *, local_ui: bool = False):
    codec = EncryptionCodec(keys.payload_keyring())
    app = codec_server.make_app(codec, keys.codec_token(), origins, local_ui=local_ui)
    return await codec_server.start(app, host, port)


async def cmd_codec_server(args: argparse.Namespace) -> int:
    logs.configure()
    keys = KeyDirectory(args.dir)
    runner = await serve_codec(keys, args.host, args.port, args.ui_origin or [DEFAULT_UI_ORIGIN])
    console.print(f"codec server on http://{args.host}:{args.port} (token in {keys.token_file}); Ctrl-C stops")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="payload-encryption and signing keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    for name, func, text in (
        ("init", cmd_keys_init, "create a development key set (what is missing only)"),
        ("rotate", cmd_keys_rotate, "add a new payload key and make it current; old keys keep decoding"),
        ("show", cmd_keys_show, "what keys this installation has"),
    ):
        p = ksub.add_parser(name, help=text)
        p.add_argument(
            "--dir",
            type=arg.directory,
            help="key directory (default $FRONTIER_REVIEW_KEYS_DIR, ~/.frontier-review/keys)",
        )
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)

    p = ksub.add_parser(
        "add",
        help="enrol a party (e.g. a new vendor): make its signing key and publish its public key",
        description="Without --public-key: create signing/<party>.pem here and publish its public key "
        "(printed). With --public-key (made on the party's own host by `keys add PARTY` there): publish "
        "only that public key.",
    )
    p.add_argument("party", help="vendor:<id>, operator:<sector>, partner:<id>, an agency, lab")
    p.add_argument("--public-key", help="the party's Ed25519 public key (base64, as `keys add` prints it)")
    p.add_argument("--replace", action="store_true", help="replace the party's key (e.g. a compromised one)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--dir", type=arg.directory, help="key directory (default $FRONTIER_REVIEW_KEYS_DIR, ~/.frontier-review/keys)"
    )
    p.set_defaults(func=cmd_keys_add)

    p = sub.add_parser("codec-server", help="decode payloads for the Web UI and the temporal CLI")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--ui-origin", action="append", help=f"allowed browser origin (default {DEFAULT_UI_ORIGIN})")
    p.add_argument("--dir", type=arg.directory, help="key directory")
    p.set_defaults(func=cmd_codec_server)


__all__ = ["KeyProblem", "add_commands", "ensure_development_keys", "serve_codec"]
