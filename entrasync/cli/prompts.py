"""Questions the CLI asks an administrator before an irreversible action."""

from __future__ import annotations

import sys

import typer

from entrasync.errors import EntrasyncError, ExitCode


class ConfirmationRequired(EntrasyncError):
    exit_code = ExitCode.USAGE


def confirm(question: str, yes: bool, dry_run: bool) -> None:
    """Ask `question` unless --yes or --dry-run; without a terminal to ask on, refuse (exit 2)
    rather than act unconfirmed; a "no" exits 1."""
    if yes or dry_run:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequired(
            f"{question} — not confirmed: add --yes to run without a terminal"
        )
    if not typer.confirm(question, default=False):
        raise typer.Exit(int(ExitCode.FAILURE))
