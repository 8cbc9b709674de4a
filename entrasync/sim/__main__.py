"""Run the emulator standalone: `python -m entrasync.sim --users 1000`.

Prints the `[entra]`/`[groups]` config to point entrasync at it (the client secret goes to
a 0600 file next to the CA), then serves until interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import signal
import sys
import tempfile
import threading
from pathlib import Path

from entrasync.sim.generate import generate_tenant
from entrasync.sim.server import EntraEmulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m entrasync.sim",
        description="An emulated Entra tenant and Microsoft Graph over HTTPS on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--users", type=int, default=1000, help="synthetic users")
    parser.add_argument("--dnt", type=int, default=10, help="direct members of the DNT group")
    parser.add_argument("--delete", type=int, default=5, help="members of the Delete group")
    parser.add_argument("--nested", type=int, default=3, help="members of a group nested in DNT")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--client-id", default="00000000-0000-4000-8000-00000000e5e5")
    parser.add_argument("--dir", type=Path, help="where to write the CA and secret files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    generated = generate_tenant(
        args.users, dnt=args.dnt, delete=args.delete, nested=args.nested, seed=args.seed
    )
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="entrasync-sim-"))
    secret = secrets.token_urlsafe(24)
    emulator = EntraEmulator(
        generated.tenant, port=args.port, page_size=args.page_size, workdir=workdir
    )
    emulator.register_app(args.client_id, secret=secret)
    secret_file = workdir / "client-secret"
    with emulator:
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
        print(
            f"""# entrasync emulator: {args.users} users, serving on {emulator.base_url}
[entra]
tenant_id = "{emulator.tenant_id}"
client_id = "{args.client_id}"
client_secret_file = "{secret_file}"
authority_host = "{emulator.authority_host}"
graph_url = "{emulator.graph_url}"
ca_bundle = "{emulator.ca_file}"

[groups]
dnt = ["{generated.dnt_group}"]
delete = ["{generated.delete_group}"]
nested = true
""",
            flush=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
