"""Identity and access: accounts, sessions, roles, API keys, personal data, audit log.

The app wires `IdentityRuntime` (the authenticator) and the routes; other contexts see
only `mercato.core.security.Principal`.
"""

from mercato.identity.events import EVENT_PAYLOADS
from mercato.identity.runtime import IdentityRuntime

__all__ = ["EVENT_PAYLOADS", "IdentityRuntime"]
