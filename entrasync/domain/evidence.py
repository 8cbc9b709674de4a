"""Identity keys of an Entra user: what a store record must carry to be the same person.

Strongest first (DESIGN.md, rename evidence): 1 the object's own UPN, current or previous;
2 an address Entra still lists for the object (mail, proxyAddresses, on-premises UPN), its
on-premises `DOMAIN\\sam` logon, its employee id; 3 a `merge.domain_map` or
`merge.netbios_map` translation (same local part / account name) of a rank 1 or 2 key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from entrasync.domain.entra import EntraUser
from entrasync.domain.identity import IdentifierKind, normalize

RANK_SAME_OBJECT = 1
RANK_ADDRESS = 2
RANK_DOMAIN_MAP = 3

_ADDRESS_KINDS = (IdentifierKind.UPN, IdentifierKind.EMAIL)


@dataclass(frozen=True)
class Key:
    kind: str
    value: str
    rank: int


def netbios_of(dns_domain: str | None) -> str | None:
    """`corp.contoso.com` -> `corp`: Graph does not expose the NetBIOS name, and the first
    DNS label is what it is in the vast majority of forests (netbios_map covers the rest)."""
    if not dns_domain:
        return None
    return normalize(dns_domain.split(".")[0]) or None


def logon_of(user: EntraUser) -> str | None:
    domain = netbios_of(user.on_premises_domain_name)
    sam = user.on_premises_sam_account_name
    return f"{domain}\\{normalize(sam)}" if domain and sam else None


def smtp_addresses(proxy_addresses: Iterable[str]) -> list[str]:
    """`SMTP:a@x` (primary) and `smtp:b@x` (aliases); other schemes (sip:, x500:) ignored."""
    return [p[5:] for p in proxy_addresses if p[:5].lower() == "smtp:" and "@" in p]


@dataclass(frozen=True)
class MergeMaps:
    domain_map: Mapping[str, str]
    netbios_map: Mapping[str, str]

    def domain_pairs(self) -> dict[str, set[str]]:
        return _both_ways(self.domain_map)

    def netbios_pairs(self) -> dict[str, set[str]]:
        return _both_ways(self.netbios_map)


def _both_ways(renames: Mapping[str, str]) -> dict[str, set[str]]:
    """Each normalised name with the names it was renamed to or from."""
    pairs: dict[str, set[str]] = {}
    for old, new in renames.items():
        pairs.setdefault(normalize(old), set()).add(normalize(new))
        pairs.setdefault(normalize(new), set()).add(normalize(old))
    return pairs


def identity_keys(user: EntraUser, previous_upns: Iterable[str], maps: MergeMaps) -> list[Key]:
    """Every key of the user with its best rank, deduplicated."""
    best: dict[tuple[str, str], int] = {}

    def add(kind: str, value: str | None, rank: int) -> None:
        if value:
            key = (kind, normalize(value))
            best[key] = min(best.get(key, rank), rank)

    def add_address(value: str | None, rank: int) -> None:
        for kind in _ADDRESS_KINDS:
            add(kind, value, rank)

    add_address(user.user_principal_name, RANK_SAME_OBJECT)
    for upn in previous_upns:
        add_address(upn, RANK_SAME_OBJECT)
    add_address(user.mail, RANK_ADDRESS)
    add_address(user.on_premises_user_principal_name, RANK_ADDRESS)
    for address in smtp_addresses(user.proxy_addresses):
        add_address(address, RANK_ADDRESS)
    add(IdentifierKind.LOGON, logon_of(user), RANK_ADDRESS)
    add(IdentifierKind.EMPLOYEE_ID, user.employee_id, RANK_ADDRESS)
    _add_translations(best, maps)
    return [Key(kind, value, rank) for (kind, value), rank in sorted(best.items())]


def _add_translations(best: dict[tuple[str, str], int], maps: MergeMaps) -> None:
    domains, netbios = maps.domain_pairs(), maps.netbios_pairs()
    for (kind, value), _rank in list(best.items()):
        translated: set[str] = set()
        if kind in _ADDRESS_KINDS and "@" in value:
            local, _, domain = value.rpartition("@")
            translated = {f"{local}@{other}" for other in domains.get(domain, ())}
        elif kind == IdentifierKind.LOGON:
            domain, _, sam = value.partition("\\")
            translated = {f"{other}\\{sam}" for other in netbios.get(domain, ())}
        for other in translated:
            key = (kind, other)
            best[key] = min(best.get(key, RANK_DOMAIN_MAP), RANK_DOMAIN_MAP)


EVIDENCE_TEXT = {
    RANK_SAME_OBJECT: "the same Entra object had this UPN",
    RANK_ADDRESS: "Entra still lists the old address for the object (proxyAddresses, mail, "
    "on-premises UPN or logon)",
    RANK_DOMAIN_MAP: "merge.domain_map/netbios_map: same local part in the mapped domain",
}
