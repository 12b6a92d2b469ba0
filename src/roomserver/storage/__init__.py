"""Durable storage: SQLite (WAL) for rooms, roster, manifests, policies, events; content-addressed blobs."""
