"""The operator's vocabulary: the observed room, plans and typed changes, run results, codes, audit entries.

Every other layer speaks these types; this package imports nothing else from the project (and does no
I/O), so the planner, the engine, the service and the CLI can all depend on it.
"""
