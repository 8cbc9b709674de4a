"""One user read directly, for an on-demand sync of one person (`entrasync sync --user`).

`GET /users/{id | userPrincipalName}?$select=id,<the users/delta properties>`
(https://learn.microsoft.com/graph/api/user-get). With `$select`, Graph returns exactly the
properties named, `id` included only when asked for, so `id` is selected explicitly; the item
is parsed by the same function as a `users/delta` item, so the mirror receives the value a
delta round would have produced. A user that does not exist (or sits in the recycle bin)
answers `404 Request_ResourceNotFound`: None here.

Addressing, as user-get.md says: a UPN that begins with `$` must be written
`/users('$x@y.com')` (the plain form is a `400`, `$` being reserved for system query
options), and a B2B guest's `#EXT#` must be encoded (`%23`), which `quote` does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from entrasync.domain.entra import EntraUser
from entrasync.errors import EntrasyncError
from entrasync.graph import parse
from entrasync.graph._delta import USER_SELECT
from entrasync.graph._errors import USER_PERMISSION, ResourceNotFound, SyncReset
from entrasync.graph._transport import Transport

# `id` first: with $select Graph returns only what is named (user-get.md, example 3).
GET_USER_SELECT = ["id", *USER_SELECT]


def user_path(key: str) -> str:
    """The request path of one user by object id or UPN (user-get.md, "HTTP request")."""
    key = key.strip()
    if key.startswith("$"):
        return "/users('" + quote(key.replace("'", "''"), safe="@$'") + "')"
    return "/users/" + quote(key, safe="@'")


def get_user(transport: Transport, key: str) -> EntraUser | None:
    """`GraphClient.get_user`: the user as `users/delta` would report it, or None (404)."""
    url = f"{transport.settings.graph_base}{user_path(key)}?$select={','.join(GET_USER_SELECT)}"

    async def read() -> dict[str, Any]:
        info = RequestInformation(Method.GET)
        info.url = url
        info.headers.try_add("Accept", "application/json")
        return await transport.get_json(info)

    try:
        data = transport.run(read, f"reading user {key}", USER_PERMISSION)
    except ResourceNotFound:
        return None
    except SyncReset:  # a 410 on a plain read: not Graph as documented
        raise EntrasyncError(f"reading user {key}: Graph answered 410 Gone") from None
    if data.get("id") is None:
        raise EntrasyncError(f"reading user {key}: Graph answered without the user's id")
    user = parse.user_change(data)
    if not isinstance(user, EntraUser):  # an item marked @removed: not a live user
        return None
    return user
