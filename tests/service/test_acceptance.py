"""The acceptance rules every path goes through (`/apply`, `roomop up`, reconcile-now), without servers."""

from __future__ import annotations

import pytest

from roomoperator.model.codes import ApiCode
from roomoperator.service.acceptance import Refused, accept
from roomoperator.service.rooms import RoomView
from roomoperator.spec.loading import load_data
from roomoperator.spec.models import RoomSpec
from tests.service.conftest import EXAMPLES, room_spec


def spec(version: int, *, entities: int = 2) -> RoomSpec:
    return load_data(room_spec("lab", version=version, entities=entities), source="<test>", base_dir=EXAMPLES)


def managed(desired: RoomSpec) -> RoomView:
    return RoomView(room_id="lab", managed=True, spec=desired)


def test_a_new_room_takes_any_spec_and_cannot_be_reconciled() -> None:
    assert accept("lab", spec(1), None).spec == spec(1)
    with pytest.raises(Refused) as refused:
        accept("lab", None, RoomView(room_id="lab"))
    assert (refused.value.code, refused.value.errors) == (ApiCode.NOT_FOUND, ["Room lab not found"])


def test_a_managed_room_takes_its_own_spec_again_or_a_newer_one() -> None:
    view = managed(spec(6, entities=3))
    assert accept("lab", spec(6, entities=3), view).warnings == []
    assert accept("lab", None, view).spec is None
    newer = accept("lab", spec(7, entities=2), view)
    assert newer.warnings == ["Entities will be removed: E-agent-2"]


def test_an_older_or_same_version_different_spec_is_refused() -> None:
    view = managed(spec(6))
    for offered in (spec(4), spec(6, entities=3)):
        with pytest.raises(Refused) as refused:
            accept("lab", offered, view)
        assert refused.value.code is ApiCode.SPEC_UPGRADE_REJECTED
        assert refused.value.desired == 6
    assert accept("lab", spec(4), RoomView(room_id="lab", spec=spec(6))).spec == spec(4)  # unmanaged
