"""The options and arguments several commands share, declared once. A few commands document
an option in their own words (`sync --dry-run`, `approve --actor`, `audit verify --json`);
those variants live here too, so that --help stays what it always was."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
BareJsonOpt = Annotated[bool, typer.Option("--json")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]
PlanOnlyOpt = Annotated[bool, typer.Option("--dry-run", help="Plan only; change nothing.")]
ActorOpt = Annotated[
    str | None,
    typer.Option("--actor", help="Administrator name for the audit log (default: login name)."),
]
ApproveActorOpt = Annotated[
    str | None,
    typer.Option("--actor", help="Administrator name for the audit log (default: login)."),
]
IdentArg = Annotated[
    str, typer.Argument(help="UPN, email, employee id, DOMAIN\\user logon, or store id.")
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Ed25519 public key (PEM): also check the signed checkpoints.",
        metavar="FILE",
    ),
]
CheckpointsOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoints",
        help="Directory of checkpoint files (audit.checkpoint_dir) to check as well.",
        metavar="DIR",
    ),
]
KeyPrefixOpt = Annotated[
    Path,
    typer.Option("--out", help="Write PREFIX.key and PREFIX.pub.", metavar="PREFIX"),
]
