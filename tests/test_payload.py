"""`WireModel`: ``to_dict`` / ``to_json`` / ``from_dict`` of every payload, wire names kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import PAYLOADS, load

from kling_async import Account, AssetUpload, PayloadError, TaskResponse, Work
from kling_async.convert import structure, unstructure

ALL_PAYLOADS = [*sorted(p.name for p in PAYLOADS.glob("*_200.json")), "account_201.json"]


MODEL_OF = {"asset_upload_200.json": AssetUpload, "account_201.json": Account}


@pytest.mark.parametrize("name", ALL_PAYLOADS)
def test_every_payload_round_trips_through_to_dict_and_from_dict(name: str) -> None:
    cls = MODEL_OF.get(name, TaskResponse)
    model = structure(load(name), cls)
    as_dict = model.to_dict()
    # The same wire names and values as the converter's own output: nothing known is lost.
    assert as_dict == unstructure(model)
    assert cls.from_dict(as_dict) == model
    assert cls.from_dict(json.loads(model.to_json())) == model
    assert json.loads(model.to_json(indent=2)) == as_dict


def test_to_dict_uses_wire_names_and_keeps_nulls() -> None:
    resp = TaskResponse(status_name="succeed", eta_time=5, works=(Work(work_id=1),))
    out = resp.to_dict()
    assert out["status_name"] == "succeed"
    assert out["etaTime"] == 5
    assert out["task"] is None
    assert out["works"][0]["workId"] == 1
    assert out["works"][0]["resource"] is None
    assert TaskResponse.from_dict(out) == resp


def test_from_dict_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    assert TaskResponse.from_dict({"brandNew": 1, "works": None}) == TaskResponse()


@pytest.mark.parametrize("data", [None, [], "text"])
def test_from_dict_of_a_non_mapping_is_a_payload_error(data: Any) -> None:
    with pytest.raises(PayloadError, match=r"TaskResponse\.from_dict: expected a mapping"):
        TaskResponse.from_dict(data)


def test_from_dict_of_a_nested_non_list_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match=r"TaskResponse\.works: expected a list, got int"):
        TaskResponse.from_dict({"works": 3})
