"""RoomOperator: keeps collaboration rooms exactly as their RoomSpec says.

The story, package by package: a spec is loaded and validated (`spec`), planned against the observed
room (`planning`), checked (`guardrails`), executed (`execution`), repeated by the service
(`service`), and remembered by the store (`store`). `clients` speak to the room server over HTTP.
"""

__version__ = "0.1.0"
