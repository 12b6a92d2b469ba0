"""The operator's durable store: desired specs with history, runs with results, audit log, room status,
and (PostgreSQL) the replicas' leases of rooms."""

from roomoperator.store.errors import FencedError, StoreError
from roomoperator.store.records import RoomRecord, RunRecord, SpecVersion
from roomoperator.store.repository import Store, normalise_url

__all__ = ["FencedError", "RoomRecord", "RunRecord", "SpecVersion", "Store", "StoreError", "normalise_url"]
