"""Entry point: runs the typer app and turns failures into the documented exit codes.

Our own failures (EntrasyncError) print one line and exit with their class's code. Anything
else is a bug: one line saying so, with the exception's type and the innermost entrasync frame,
exit 70 (DESIGN.md); the traceback only with ENTRASYNC_DEBUG=1. Both are scrubbed of secrets.
Ctrl-C exits 130 quietly; a second press while the command unwinds ends the process by the
signal.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType

from entrasync.cli.app import app
from entrasync.cli.output import error, error_detail
from entrasync.errors import EntrasyncError, ExitCode
from entrasync.store.urls import scrub

__all__ = ["app", "main"]

DEBUG_ENV = "ENTRASYNC_DEBUG"
CLIENT_SECRET_ENV = "ENTRASYNC_CLIENT_SECRET"  # noqa: S105 - a variable name (graph.credentials)


def main(argv: list[str] | None = None) -> int:
    """Run one command; usage errors exit 2 (click), our failures their documented code."""
    with _second_ctrl_c_ends_the_process():
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        app(args=argv, prog_name="entrasync")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except EntrasyncError as exc:
        error(scrub(str(exc)))
        return int(exc.exit_code)
    except Exception as exc:  # the catch-all of DESIGN.md: a bug, said in one line
        return _internal_error(exc, sys.argv[1:] if argv is None else argv)
    return 0


@contextmanager
def _second_ctrl_c_ends_the_process() -> Iterator[None]:
    """The first Ctrl-C raises KeyboardInterrupt: the command unwinds, its transaction rolls
    back, exit 130. A press while it unwinds ends the process at once, by the signal (which
    shells report as 130 too), instead of interrupting the rollback or the closing of the
    store's connections half-way (SQLAlchemy logged a traceback for each). Dying there loses
    nothing: a transaction that did not commit is the database's to undo (SQLite's
    write-ahead log, PostgreSQL's dropped connection). Only where Ctrl-C is Python's
    default: the daemon installs its own handlers, and a host program may have its own."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    def first_press(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first_press)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is first_press:  # not pressed: as it was
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _internal_error(exc: Exception, argv: Sequence[str]) -> int:
    secrets = _known_secrets(argv)
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        detail = "".join(traceback.format_exception(exc))
        error_detail(_scrubbed(detail, secrets))
    where = _innermost_frame(exc.__traceback__)
    # Scrub before cutting: a cut through a secret would leave its first half.
    lines = _scrubbed(str(exc), secrets).strip().splitlines()
    about = f" ({lines[0][:200]})" if lines else ""
    error(
        f"internal error (this is a bug): {type(exc).__name__}{about} in {where}; "
        f"run with {DEBUG_ENV}=1 for the traceback"
    )
    return int(ExitCode.INTERNAL)


def _innermost_frame(tb: TracebackType | None) -> str:
    """`module:function:line` of the innermost entrasync frame (else the innermost one)."""
    places = [
        (str(frame.f_globals.get("__name__", "?")), f"{frame.f_code.co_name}:{line}")
        for frame, line in traceback.walk_tb(tb)
    ]
    ours = [p for p in places if p[0] == "entrasync" or p[0].startswith("entrasync.")]
    chosen = (ours or places or [("unknown", "?")])[-1]
    return f"{chosen[0]}:{chosen[1]}"


def _known_secrets(argv: Sequence[str]) -> list[str]:
    """The secrets this invocation could have seen (client secret, SMTP and database
    passwords), best effort: the config, or an import, may be the very thing that is broken."""
    found = [os.environ.get(CLIENT_SECRET_ENV, "").strip()]
    try:
        from entrasync.config import load_config, resolve_config_path
        from entrasync.daemon.runner import known_secrets

        config = load_config(resolve_config_path(_config_option(argv)))
        found += known_secrets(config, os.environ)
    except Exception:  # noqa: S110 - nothing more to learn; URL masking still applies
        pass
    return [s for s in found if s]


def _config_option(argv: Sequence[str]) -> Path | None:
    for index, arg in enumerate(argv):
        if arg in ("--config", "-c") and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--config="):
            return Path(arg.removeprefix("--config="))
    return None


def _scrubbed(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    try:
        from entrasync.daemon.logs import scrubber

        line = scrubber(None, "", text)  # whatever the daemon learnt (rotated secrets)
        text = line if isinstance(line, str) else text
    except Exception:  # noqa: S110 - the explicit secrets and URL masking still apply
        pass
    return scrub(text)


def run() -> None:
    sys.exit(main())
