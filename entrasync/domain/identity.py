"""Identifiers and logons: how they are normalised and how a report finds its user."""

from __future__ import annotations

from enum import StrEnum


class IdentifierKind(StrEnum):
    UPN = "upn"
    EMAIL = "email"
    EMPLOYEE_ID = "employee_id"
    # A `domain\username` logon, kept on the user so it is still recognised after a purge
    # removed the agent (and on pre-registered users that never had an agent).
    LOGON = "logon"


def normalize(value: str) -> str:
    return value.strip().casefold()


def normalize_logon(value: str) -> str:
    """`CONTOSO\\JDoe` -> `contoso\\jdoe`; raises ValueError when not `domain\\username`."""
    domain, sep, user = value.strip().partition("\\")
    if not sep or not domain or not user or "\\" in user:
        raise ValueError(f"logon {value!r} is not of the form DOMAIN\\username")
    return f"{domain.casefold()}\\{user.casefold()}"


# Which identifier kinds a report field is matched against, in order. A UPN is very often
# the mail address too, so upn and email are tried against both kinds.
MATCH_ORDER: tuple[tuple[str, tuple[IdentifierKind, ...]], ...] = (
    ("upn", (IdentifierKind.UPN, IdentifierKind.EMAIL)),
    ("email", (IdentifierKind.EMAIL, IdentifierKind.UPN)),
    ("employee_id", (IdentifierKind.EMPLOYEE_ID,)),
)
