"""Building spec documents for the tests, and collecting the issues that bad ones raise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roomoperator.spec import SpecError, load_data, load_text

EXAMPLES = Path(__file__).parents[2] / "examples" / "specs"


def minimal(**spec: Any) -> dict[str, Any]:
    """A valid RoomSpec document as data, with `spec` keys overridden."""
    return {
        "apiVersion": "v1",
        "kind": "RoomSpec",
        "metadata": {"name": "lab", "version": 1},
        "spec": {"roomId": "room-test-1", "policies": {"dmVisibilityDefault": "team"}, **spec},
    }


def issues_of_text(text: str, **kwargs: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_text(text, **kwargs)
    return [str(issue) for issue in caught.value.issues]


def issues_of_data(data: object, **kwargs: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_data(data, **kwargs)
    return [str(issue) for issue in caught.value.issues]
