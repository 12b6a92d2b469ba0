"""The operator's durable store: desired specs with history, runs with results, audit log, room status."""

from roomoperator.store.records import RoomRecord, RunRecord, SpecVersion
from roomoperator.store.repository import Store, StoreError, normalise_url

__all__ = ["RoomRecord", "RunRecord", "SpecVersion", "Store", "StoreError", "normalise_url"]
