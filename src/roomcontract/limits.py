"""Bounds on an entity's and an artifact's declared fields, the same on both sides of the wire.

The room server refuses a value past these bounds with a 400 naming the field (`docs/contract.md`,
"Limits"); the operator checks its specs against the same numbers, so such a spec is refused at `/apply`
or `roomop validate` with the spec's line rather than failing later, at run time, on the room server.
"""

from __future__ import annotations

from typing import Final

MAX_DISPLAY_NAME: Final = 256
MAX_OWNER_USER_ID: Final = 256
MAX_CAPABILITIES: Final = 64
MAX_CAPABILITY_LENGTH: Final = 128
MAX_ENV_WHITELIST: Final = 64
MAX_ENV_NAME_LENGTH: Final = 256
MAX_POLICY_SCOPES: Final = 64
MAX_POLICY_SCOPE_LENGTH: Final = 128
MAX_TAGS: Final = 64
