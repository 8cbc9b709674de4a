"""An emulator of the parts of Entra ID and Microsoft Graph that entrasync uses.

Tests, benchmarks and the demo drive the real MSAL and msgraph-sdk code against it over
real HTTPS: `EntraEmulator` (server), `Tenant` (data and change history), `generate_tenant`
(large synthetic tenants), fault injection (`emu.faults`, faults.py: rules and seeded random
faults), the real Graph's rough edges (`Quirks`, quirks.py) and a request log (`emu.log`).
"""

from entrasync.sim.auth import ALL_PERMISSIONS, AppRegistration
from entrasync.sim.certs import make_client_certificate
from entrasync.sim.faults import Fault, FaultKind, RequestRecord
from entrasync.sim.generate import GeneratedTenant, generate_tenant
from entrasync.sim.quirks import Expiry, Quirks
from entrasync.sim.server import EntraEmulator
from entrasync.sim.tenant import SimGroup, SimUser, Tenant

__all__ = [
    "ALL_PERMISSIONS",
    "AppRegistration",
    "EntraEmulator",
    "Expiry",
    "Fault",
    "FaultKind",
    "GeneratedTenant",
    "Quirks",
    "RequestRecord",
    "SimGroup",
    "SimUser",
    "Tenant",
    "generate_tenant",
    "make_client_certificate",
]
