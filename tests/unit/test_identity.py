"""Identifier and logon normalisation."""

from __future__ import annotations

import pytest

from entrasync.domain.identity import MATCH_ORDER, IdentifierKind, normalize, normalize_logon


def test_identifiers_compare_case_insensitively() -> None:
    assert normalize("  JDoe@Contoso.COM ") == "jdoe@contoso.com"
    assert normalize("Straße@X.de") == normalize("STRASSE@x.de")  # casefold, not lower


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CONTOSO\\JDoe", "contoso\\jdoe"),
        (" LAPTOP-42\\Admin ", "laptop-42\\admin"),
        ("contoso\\jdoe", "contoso\\jdoe"),
    ],
)
def test_logon_is_case_folded(raw: str, expected: str) -> None:
    assert normalize_logon(raw) == expected


@pytest.mark.parametrize("raw", ["jdoe", "\\jdoe", "CONTOSO\\", "a\\b\\c", "", "jdoe@contoso.com"])
def test_logon_must_be_domain_backslash_user(raw: str) -> None:
    with pytest.raises(ValueError, match="DOMAIN"):
        normalize_logon(raw)


def test_match_order_is_upn_email_employee_id() -> None:
    assert [name for name, _ in MATCH_ORDER] == ["upn", "email", "employee_id"]
    assert dict(MATCH_ORDER)["upn"][0] is IdentifierKind.UPN
    assert dict(MATCH_ORDER)["employee_id"] == (IdentifierKind.EMPLOYEE_ID,)
