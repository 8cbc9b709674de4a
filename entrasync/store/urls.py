"""Database URLs in messages: shown only with the password masked, whatever their shape.

A URL that SQLAlchemy cannot parse (``postgresql+psycopg//user:pw@host/db``) is exactly the
one an operator is told about, so masking works on the text itself: whatever sits between
the user name and the last ``@`` is replaced, and so is any ``password=`` parameter. Driver
and parser messages about a URL get every form of its password (as written, percent-decoded)
replaced as well, because they often quote the URL or the DSN.
"""

from __future__ import annotations

import re
import sqlite3
from functools import cache
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"
# Database -> the one driver entrasync speaks to it with (PostgreSQL: psycopg 3's pipelines,
# COPY and dumpers, store/driver.py); `postgresql://` alone means psycopg with SQLAlchemy 2.1.
BACKENDS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
EXAMPLES = "sqlite:////var/lib/entrasync/store.db or postgresql+psycopg://user@host:5432/dbname"

# A scheme-like word and the run of ':' and '/' after it ("postgresql+psycopg://", or the
# malformed "…//", "…:/", "…:").
_PREFIX = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)?(?P<sep>[:/]*)")
# `password=…` in a query string or a libpq DSN, quoted or not.
_KEYWORD = re.compile(r"(?i)\b(password|passwd|pwd)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")
# URLs inside a longer text (a driver message, a traceback line).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/{1,3}[^\s'\"<>]+@[^\s'\"<>]*")


def parse(url: str) -> URL:
    """The parsed URL; ValueError (naming the URL masked) when it is not a database URL this
    program can use."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as exc:
        raise ValueError(
            f"{safe_url(url)} is not a database URL ({hide(exc, url)}); expected {EXAMPLES}"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise ValueError(f"{safe_url(url)}: unsupported database {backend!r}; expected {EXAMPLES}")
    if parsed.get_driver_name() != BACKENDS[backend]:
        raise ValueError(
            f"{safe_url(url)}: unsupported driver {parsed.get_driver_name()!r} for {backend} "
            f"(entrasync uses {BACKENDS[backend]}); expected {EXAMPLES}"
        )
    if backend == "sqlite" and not sqlite_has_json():
        raise ValueError(
            f"{safe_url(url)}: this Python's SQLite {sqlite3.sqlite_version} has no JSON "
            "functions (json_each); entrasync needs SQLite 3.38 or one built with JSON1"
        )
    return parsed


@cache
def sqlite_has_json() -> bool:
    """Whether the SQLite this Python links has JSON1 (store/id_lists.py sends id lists
    through `json_each`; SQLAlchemy's JSON type needs it too): built in since 3.38."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("SELECT count(*) FROM json_each('[1]')")
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
    return True


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return _mask_keywords(_mask_userinfo(url)[0])


def hide(message: object, url: str) -> str:
    """A message from a driver or the URL parser, with every form of the URL's password
    removed (and any other URL or `password=` in it masked)."""
    text = str(message)
    for secret in sorted(passwords(url), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return scrub(text)


def scrub(text: str) -> str:
    """Mask the passwords of any URLs and `password=` parameters in free text."""
    return _mask_keywords(_URL_IN_TEXT.sub(lambda m: _mask_userinfo(m.group(0))[0], text))


def passwords(url: str) -> set[str]:
    """Every way the URL's password may be spelled in a message."""
    found: set[str] = set()
    try:
        parsed = make_url(url)
        if parsed.password:
            found.add(str(parsed.password))
        for key, value in parsed.query.items():
            if _KEYWORD.fullmatch(f"{key}=x"):
                found.update([value] if isinstance(value, str) else value)
    except (ArgumentError, ValueError, TypeError):
        pass
    masked = _mask_userinfo(url)[1]
    # Where the user name ends is a guess in a malformed URL: every tail after a ':' may be
    # the password.
    found.update(masked[i + 1 :] for i, char in enumerate(masked) if char == ":")
    found.add(masked)
    found.update(m.group(3).strip("'") for m in _KEYWORD.finditer(url))
    spelled = set(found)
    for value in found:
        spelled.update({unquote(value), quote(value, safe="")})
    return {s for s in spelled if s and s != MASK}


def _mask_userinfo(url: str) -> tuple[str, str]:
    """(the URL with the password part of its userinfo masked, the text that was masked)."""
    prefix = _PREFIX.match(url)
    assert prefix is not None  # every group is optional
    scheme = prefix["scheme"] or ""
    if scheme.lower().startswith("sqlite") and prefix["sep"].startswith(":///"):
        return url, ""  # a file path: no credentials, and the path may contain '@'
    head, rest = url[: prefix.end()], url[prefix.end() :]
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url, ""
    user, colon, password = userinfo.partition(":")
    well_formed = prefix["sep"] == "://" and bool(scheme)
    if not colon and well_formed:
        return url, ""  # `scheme://user@host`: no password
    if colon and "/" in prefix["sep"]:
        return f"{head}{user}:{MASK}@{host}", password
    # No telling where the user name ends (`postgresql+psycopg:user:pw@…` runs the scheme,
    # the user and the password together): hide all of it.
    return f"{head}{MASK}@{host}", userinfo


def _mask_keywords(text: str) -> str:
    return _KEYWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
