"""`entrasync db check-tally`: the maintained license tally (store/tally.py: licenses in use
and live records, kept up to date by every writer) against a full count of the store, and its
repair, audited as `tally.repaired`.

The check is a reader (one statement, one snapshot: it works on a read-only store and never
waits for a writer). The repair is a writer: it holds the writers' lock while it counts, so no
writer changes the figures between the count and the row it sets; when the tally already
agrees it writes nothing and audits nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from entrasync.config import Config
from entrasync.domain.audit import AuditEvent
from entrasync.store import tally as tally_rows
from entrasync.store.db import Store

REPAIRED = "tally.repaired"


@dataclass(frozen=True)
class Figures:
    used: int  # licenses in use
    live_users: int  # records not merged away

    def as_dict(self) -> dict[str, int]:
        return {"used": self.used, "live_users": self.live_users}


@dataclass(frozen=True)
class TallyCheck:
    """What was found. `maintained` is None on a store without a tally row (bulk-loaded):
    nothing is wrong there, the next writer counts the store once."""

    maintained: Figures | None
    counted: Figures
    repaired: bool = False

    @property
    def agree(self) -> bool:
        return self.maintained is None or self.maintained == self.counted

    def as_dict(self) -> dict[str, Any]:
        """The `db check-tally --json` document."""
        return {
            "maintained": self.maintained.as_dict() if self.maintained else None,
            "counted": self.counted.as_dict(),
            "agree": self.agree,
            "repaired": self.repaired,
        }


def check(store: Store) -> TallyCheck:
    """Read-only: the maintained figures and a full count (O(store): an admin's check, not a
    cycle's)."""
    with store.reading() as session:
        maintained, counted = tally_rows.maintained_and_counted(session)
    return TallyCheck(_figures(maintained), Figures(*counted))


def repair(store: Store, config: Config, now: datetime, actor: str) -> TallyCheck:
    """Set the tally to a full count when it differs (or is missing), audited once with the
    figures before and after; like every writer it applies `[account]`, and the compliance
    clock reads the repaired count. A tally that agrees is left alone: nothing is written."""
    with store.unit_of_work(now, actor=actor, account=config.account, notify=config.notify) as uow:
        uow.lock()  # no writer moves the figures between the reading and the count
        row = tally_rows.settle(uow.session)  # nothing touched yet: the row as stored
        before = None if row is None else Figures(row.used, row.live_users)
        row = tally_rows.recount(uow.session)
        after = Figures(row.used, row.live_users)
        if before == after:
            uow.discard()
            return TallyCheck(before, after)
        uow.audit(
            AuditEvent(
                REPAIRED,
                "the maintained license tally differed from a full count of the store "
                "(or was missing): set to the count",
                details={
                    "before": before.as_dict() if before else None,
                    "after": after.as_dict(),
                },
            )
        )
    return TallyCheck(before, after, repaired=True)


def _figures(pair: tuple[int, int] | None) -> Figures | None:
    return None if pair is None else Figures(*pair)
