"""The spec error vocabulary: one `SpecIssue` per problem, all of them raised together as a `SpecError`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecIssue:
    """One problem (or warning) found in a RoomSpec, with its place in the source when known.

    `path` is the field path inside the document (`spec.entities[2].kind`, `""` for the document
    itself); `line` and `col` are 1-based.
    """

    source: str
    path: str
    message: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        place = self.source
        if self.line is not None:
            place += f":{self.line}"
            if self.col is not None:
                place += f":{self.col}"
        parts = [part for part in (place, self.path) if part]
        return ": ".join([*parts, self.message])

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "path": self.path,
            "message": self.message,
            "line": self.line,
            "col": self.col,
        }


class SpecError(Exception):
    """Bad spec input: carries every issue found, never just the first."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))
