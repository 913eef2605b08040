"""The converter: exact wire names of request bodies on the wire, tolerant structuring of
answers (unknown fields, nulls, wrong types), and independent converters."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import URL1, URL2, json_diff, kolors, load, video

from kling_async import (
    Account,
    KlingClient,
    PayloadError,
    Task,
    TaskInfo,
    TaskResponse,
    TaskStatus,
    Work,
    make_converter,
)
from kling_async.convert import CONVERTER, structure, structure_task, unstructure
from kling_async.testing import KlingSimulator


async def test_submit_kolors(client: KlingClient, sim: KlingSimulator) -> None:
    resp = await client.submit(kolors(aspect_ratio="1:1", image_count=2))
    assert isinstance(resp, TaskResponse)
    assert resp.status_name == "submitted"
    assert not resp.is_final
    task = sim.tasks[resp.task_id or 0]
    assert task.endpoint == "images/kolors-elements"
    assert task.body["subjectImage1"] == URL1
    assert task.body["subjectImage2"] == URL2
    assert task.body["imageCount"] == 2
    assert task.body["aspect_ratio"] == "1:1"
    assert sim.stats["posts"] == 1


async def test_submit_video(client: KlingClient, sim: KlingSimulator) -> None:
    resp = await client.submit(video(duration=10, mode="pro", images=[URL1, URL2]))
    task = sim.tasks[resp.task_id or 0]
    assert task.endpoint == "videos/image2video-elements"
    assert task.body["image_0"] == URL1
    assert task.body["image_1"] == URL2
    assert task.body["mode"] == "pro"
    assert resp.task is not None
    assert resp.task.type == "m2v_img2video_hq"


def test_unknown_fields_are_ignored_at_every_level() -> None:
    wire = load("task_succeed_200.json")
    wire["brandNew"] = {"x": 1}
    wire["task"]["shinyFlag"] = True
    wire["task"]["taskInfo"]["newList"] = [1, 2]
    wire["task"]["taskInfo"]["inputs"][0]["hash"] = "abc"
    wire["task"]["taskInfo"]["arguments"][0]["kind"] = "text"
    wire["works"][0]["watermark"] = True
    wire["works"][0]["resource"]["format"] = "mp4"
    wire["limitation"]["period"] = "day"
    with_extras = structure_task(wire)
    assert with_extras == structure_task(load("task_succeed_200.json"))
    _, ignored = json_diff(wire, unstructure(with_extras))
    assert sorted(ignored) == sorted(
        [
            "$.brandNew",
            "$.task.shinyFlag",
            "$.task.taskInfo.newList",
            "$.task.taskInfo.inputs[0].hash",
            "$.task.taskInfo.arguments[0].kind",
            "$.works[0].watermark",
            "$.works[0].resource.format",
            "$.limitation.period",
        ]
    )


def test_missing_fields_are_defaulted() -> None:
    empty = structure_task({})
    assert empty == TaskResponse()
    assert empty.works == ()
    assert empty.task is None
    assert empty.task_id is None
    assert empty.state is TaskStatus.UNKNOWN
    assert not empty.is_final
    assert empty.arguments == {}
    assert empty.urls == []
    assert empty.eta_seconds is None
    partial = structure_task({"task": {"id": 7, "taskInfo": {}}, "works": [{}]})
    assert partial.task == Task(id=7, task_info=TaskInfo())
    assert partial.works == (Work(),)
    assert partial.arguments == {}
    assert partial.urls == []
    assert partial.cover_urls == []


@pytest.mark.parametrize(
    "wire",
    [
        {"works": None},
        {"task": {"taskInfo": {"inputs": None, "arguments": None}}},
        {"userPoints": {"points": None, "total": None}},
        {"userTickets": {"ticket": None}},
        {"task": None, "limitation": None, "editProject": None},
        {"works": [{"resource": None, "cover": None}]},
    ],
)
def test_nulls_are_accepted(wire: dict[str, Any]) -> None:
    resp = structure_task(wire)
    assert resp.works in ((), (Work(),))
    if resp.task is not None and resp.task.task_info is not None:
        assert resp.task.task_info.inputs == ()
        assert resp.task.task_info.arguments == ()
    if resp.user_points is not None:
        assert resp.user_points.points == ()
    if resp.user_tickets is not None:
        assert resp.user_tickets.ticket == ()
    assert resp.urls == []


def test_null_works_round_trips_as_empty_list() -> None:
    assert unstructure(structure_task({"works": None}))["works"] == []


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        # Numbers and booleans sent as strings are read.
        ({"status": "99", "status_final": "true"}, TaskResponse(status=99, status_final=True)),
        ({"etaTime": 1500.0}, TaskResponse(eta_time=1500)),
        ({"etaTime": "1500"}, TaskResponse(eta_time=1500)),
        # Values of a hopeless type become None rather than failing the whole answer.
        ({"status": "abc"}, TaskResponse()),
        ({"status": "1e400"}, TaskResponse()),
        ({"status": float("inf")}, TaskResponse()),
        ({"message": {"nested": 1}}, TaskResponse()),
        ({"status_final": "maybe"}, TaskResponse()),
        ({"task": "123"}, TaskResponse()),
        ({"works": {"0": {}}}, TaskResponse()),
        ({"limitation": []}, TaskResponse()),
        # Items that are not objects are skipped.
        ({"works": [None, 3, "x", {"workId": "7"}]}, TaskResponse(works=(Work(work_id=7),))),
        # Free-form objects and lists of the wrong shape ("[]" for an empty object).
        ({"task": {"taskInfo": {"extraArgs": []}}}, TaskResponse(task=Task(task_info=TaskInfo()))),
        ({"task": {"taskInfo": {"extraArgs": "x"}}}, TaskResponse(task=Task(task_info=TaskInfo()))),
        (
            {"task": {"taskInfo": {"callbackPayloads": {}}}},
            TaskResponse(task=Task(task_info=TaskInfo())),
        ),
        ({"status": 5, "replyRef": 42}, TaskResponse(status=5, reply_ref="42")),
    ],
)
def test_wrong_types_are_tolerated(wire: dict[str, Any], expected: TaskResponse) -> None:
    assert structure_task(wire) == expected


def test_account_session_of_the_wrong_shape_is_tolerated() -> None:
    assert structure({"email": "a@b.c", "session": []}, Account) == Account(email="a@b.c")


@pytest.mark.parametrize("data", [None, [], [1, 2], "text", 3])
def test_a_body_that_is_not_an_object_is_a_payload_error(data: Any) -> None:
    with pytest.raises(PayloadError, match="expected a JSON object for TaskResponse"):
        structure_task(data)


def test_reply_ref_round_trips() -> None:
    back = unstructure(structure_task({"status": 5, "replyRef": "abc"}))
    assert back["replyRef"] == "abc"


def test_make_converter_builds_an_independent_equivalent_converter() -> None:
    conv = make_converter()
    assert conv is not CONVERTER
    assert conv is not make_converter()
    wire = load("kolors_elements_200.json")
    assert conv.structure(wire, TaskResponse) == structure_task(wire)
    assert conv.unstructure(structure_task(wire)) == unstructure(structure_task(wire))


@pytest.mark.parametrize("value", [None, "text", 7, [], {}])
def test_a_task_info_that_is_null_or_not_an_object(value: Any) -> None:
    task = structure_task({"task": {"id": 1, "taskInfo": value}}).task
    assert task is not None
    assert task.task_info == (TaskInfo() if value == {} else None)
    assert task == Task(id=1, task_info=task.task_info)
    with pytest.raises(AttributeError, match="no attribute 'task_infos'"):
        task.task_infos  # type: ignore[attr-defined]  # noqa: B018


def test_hooks_registered_on_a_converter_are_used_by_the_model_hooks() -> None:
    conv = make_converter()
    conv.register_structure_hook(str | None, lambda v, _: None if v is None else f"<{v}>")
    resp = conv.structure(
        {"status_name": "succeed", "task": {"taskInfo": {"type": "t"}}}, TaskResponse
    )
    assert resp.status_name == "<succeed>"
    assert resp.task is not None
    assert resp.task.task_info == TaskInfo(type="<t>")
    assert structure_task({"status_name": "succeed"}).status_name == "succeed"  # unaffected
