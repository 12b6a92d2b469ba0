"""RoomOperator: keeps collaboration rooms exactly as their RoomSpec says.

The story, package by package (docs/architecture.md): `model` is the vocabulary every layer speaks; a
spec is loaded and validated (`spec`), planned against the observed room and judged by the guardrails
(`planning`), executed against the room server (`engine`, through `clients`), repeated by the service
(`service`) and remembered by the store (`store`); `cli` is the terminal's way in.
"""

__version__ = "0.1.0"
