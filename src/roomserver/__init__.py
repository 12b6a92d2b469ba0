"""RoomServer: rooms, declared entities and live sessions, versioned artifacts, policies, live events.

Wire-compatible with the reference .NET RoomServer plus the operator endpoints of the integration guide.
"""

__version__ = "0.1.0"
