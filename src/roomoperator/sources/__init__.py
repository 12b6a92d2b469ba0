"""GitOps sources of desired state: a folder of spec files (`folder.py`), a git repository's branch
(`git.py`), both read into one `Snapshot` (`scanning.py`) that the `Syncer` (`syncing.py`) offers to the
service's one acceptance path through a `Sink`; the git webhook's payloads and signatures (`webhooks.py`).

This layer sits between the service and the engine and store: it may use `store/`, `engine/`, `spec/`
and `model/`, never `service/`, which composes it."""
