"""Every machine-readable code the operator produces, as enums: one place to read the vocabulary.

`RunCode` is a run's `code` (`RunResult.code`, the `/apply` answer, conditions); `GuardrailCode` names a
guardrail refusal; `BlockCode` says why a planned change will not be made; `ApiCode` is the `code` of an
operator API error body; `NotificationKind` says what a webhook notification is about; `ExitCode` is
what the `roomop` commands exit with (Terraform's convention).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class RunCode(StrEnum):
    """Why a run was refused or failed (None on a run that succeeded)."""

    GUARDRAILS_EXCEEDED = "GUARDRAILS_EXCEEDED"
    ITEMS_FAILED = "ITEMS_FAILED"
    CHANGES_BLOCKED = "CHANGES_BLOCKED"
    """The room needs changes and every one of them is blocked (scopes, server, files): nothing was made."""
    PLAN_CHANGED = "PLAN_CHANGED"
    """The plan made at APPLY differs from the one the caller confirmed: nothing was written."""
    UNAUTHORIZED = "UNAUTHORIZED"
    ROOM_SERVER_UNREACHABLE = "ROOM_SERVER_UNREACHABLE"
    ROOM_SERVER_ERROR = "ROOM_SERVER_ERROR"
    FENCED = "FENCED"
    """Another operator replica owns the room now: this replica's writes were refused and its run stopped
    (the new owner runs the room)."""
    INTERNAL_ERROR = "INTERNAL_ERROR"


class GuardrailCode(StrEnum):
    """One guardrail's refusal of a plan."""

    KICK_LIMIT = "KICK_LIMIT_EXCEEDED"
    DELETE_LIMIT = "DELETE_LIMIT_EXCEEDED"
    CHANGE_RATIO = "CHANGE_RATIO_NEEDS_CONFIRM"
    EMPTY_ROOM = "EMPTY_ROOM_NEEDS_CONFIRM"


class BlockCode(StrEnum):
    """Why one planned change will not be made."""

    SEED_FILE_MISSING = "SEED_FILE_MISSING"
    UNSUPPORTED = "UNSUPPORTED_BY_SERVER"
    PENDING = "PENDING"
    PROTECTED = "PROTECTED"
    MISSING_SCOPE = "MISSING_SCOPE"
    DEPENDENCY_MISSING = "DEPENDENCY_MISSING"
    NO_ENDPOINT = "RESOURCE_WITHOUT_ENDPOINT"
    FEATURE_DISABLED = "FEATURE_DISABLED"
    """A declared item of a feature that is off (`features.resources`): skipped, not a change."""


class ApiCode(StrEnum):
    """The `code` of an error body of the operator's HTTP API."""

    AUTH_REQUIRED = "AUTH_REQUIRED"
    INSUFFICIENT_SCOPE = "INSUFFICIENT_SCOPE"
    """A known token without the scope the route needs (`operator:read` or `operator:write`; 403)."""
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_BODY = "INVALID_BODY"
    INVALID_SPEC = "INVALID_SPEC"
    BODY_TOO_LARGE = "BODY_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    SPEC_UPGRADE_REJECTED = "SPEC_UPGRADE_REJECTED"
    """`reconciliation.upgrade: strict`: a changed spec must carry a greater `metadata.version` (400)."""
    SPEC_VERSION_REGRESSION = "SPEC_VERSION_REGRESSION"
    """A lower `metadata.version` than the room's latest revision, neither forced nor a restore (409)."""
    SPEC_KEPT = "SPEC_KEPT"
    """`roomop up`: the file's spec is not newer than a revision made through another path, which is kept."""
    SEED_REFUSED = "SEED_REFUSED"
    """A `seedFrom` of a spec posted over HTTP that the operator will not read (outside the seed roots)."""
    SEEDS_MISMATCH = "SEEDS_MISMATCH"
    """A multipart `/apply` whose seed parts are not exactly the spec's `seedFrom` paths."""
    SOURCE_CONFLICT = "SOURCE_CONFLICT"
    """The room belongs to a GitOps source that allows no manual override, and the spec came from
    elsewhere (`POST /apply`, another source; 409)."""
    NOT_FOUND = "NOT_FOUND"


class NotificationKind(StrEnum):
    """What a webhook notification is about (the settings' subscriptions name these)."""

    RUN_FAILED = "run.failed"
    GUARDRAIL_REFUSED = "guardrail.refused"
    """A run's plan was refused by the guardrails; the notification says what would have changed."""
    DRIFT_CORRECTED = "drift.corrected"
    ROOM_STALLED = "room.stalled"
    ROOM_RECOVERED = "room.recovered"
    """A Stalled room converged again."""
    SOURCE_FAILED = "source.failed"
    """A GitOps source could not be read, or declared invalid or refused specs."""


class ExitCode(IntEnum):
    """`roomop` exit codes: 0 success (plan: nothing to do), 1 any error, 2 changes (plan, or apply with
    `--detailed-exitcode`)."""

    OK = 0
    ERROR = 1
    CHANGES = 2
