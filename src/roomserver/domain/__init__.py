"""The room server's rules (ids, entities, artifacts, policies, events), free of I/O and frameworks."""
