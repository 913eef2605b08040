"""The simulator's wire table and the client's request layer were written separately from
the pages: here they are held against each other, field by field."""

from __future__ import annotations

import attrs
import pytest

from kling_async.requests import REQUEST_TYPES
from kling_async.requests.fields import spec_of
from kling_async.testing.endpoints_image import IMAGE_ENDPOINTS
from kling_async.testing.endpoints_video import VIDEO_ENDPOINTS

TABLE = {e.path: e for e in (*VIDEO_ENDPOINTS, *IMAGE_ENDPOINTS)}
SEED = {"images/kolors-elements", "videos/image2video-elements"}
SHARED = {"maxJobs", "replyUrl", "replyRef"}


def _client_wire_names(endpoint: str) -> set[str]:
    names: set[str] = set()
    for field in attrs.fields(REQUEST_TYPES[endpoint]):
        spec = spec_of(field)
        if spec is None:
            continue
        if "shot_" in spec.wire:
            names |= {f"shot_{n}_{part}" for n in range(1, 7) for part in ("prompt", "duration")}
        elif "{}" in spec.wire:
            assert spec.max_count is not None
            names |= set(spec.wire_names(spec.max_count))
        else:
            names.add(spec.wire)
    return names


def test_both_sides_know_the_same_generation_endpoints() -> None:
    assert set(REQUEST_TYPES) - SEED == set(TABLE) - {"videos/motion-upload"}


@pytest.mark.parametrize("endpoint", sorted(set(REQUEST_TYPES) - SEED))
def test_both_sides_know_the_same_fields(endpoint: str) -> None:
    simulator = {f.name for f in TABLE[endpoint].fields} - SHARED
    assert _client_wire_names(endpoint) == simulator
