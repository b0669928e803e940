"""``meshdcm keys init|add|revoke|list``: the mesh keyring, which says who may join (docs/security.md)."""

from __future__ import annotations

import json


def cmd_keys(args) -> int:
    from ..keys import Keyring

    ring = Keyring(args.keyring)
    if args.keys_command == "init":
        ring.init()
        print(f"created keyring {ring.path}; add a key per node with: meshdcm keys add NAME --keyring {ring.path}")
    elif args.keys_command == "add":
        if args.public:
            ring.authorize(args.name, args.public)
            print(f"authorized {args.name} in {ring.path}")
        else:
            secret = ring.add(args.name)
            print(f"made and authorized key {args.name}; its secret is {secret}: copy it (and authorized/) to the "
                  f"node's machine only")
    elif args.keys_command == "revoke":
        ring.revoke(args.name)
        print(f"revoked {args.name}: running nodes refuse it within a second for new connections")
    else:
        entries = ring.list()
        if args.json:
            print(json.dumps(entries, indent=2))
        else:
            for e in entries:
                print(f"{e['name']:24} {e['status']:10} {e['public_key']}{'  (secret here)' if e['secret_here'] else ''}")
    return 0
