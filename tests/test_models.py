"""Payload models and the converter: published examples, tolerance, round trips, helpers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import attrs
import pytest
from helpers import json_diff, load

from kling_async import (
    FINAL_STATUSES,
    Account,
    AssetUpload,
    Limitation,
    Resource,
    Task,
    TaskArgument,
    TaskInfo,
    TaskInput,
    TaskResponse,
    TaskStatus,
    UserPoints,
    UserTickets,
    Work,
)
from kling_async.convert import (
    structure,
    structure_task,
    unstructure,
)

TASK_PAYLOADS = (
    "kolors_elements_200.json",
    "image2video_elements_200.json",
    "task_succeed_200.json",
)
UTC = timezone.utc


def test_json_diff_helper_catches_differences() -> None:
    assert json_diff({"a": 1, "b": None, "c": [1, {"d": True}]}, {"a": 1.0, "c": [1, {"d": True}]})
    assert json_diff({"a": 1}, {"a": True})[0]
    assert json_diff({"a": [1, 2]}, {"a": [1]})[0]
    assert json_diff({"a": "1"}, {"a": 1})[0]
    assert json_diff({"x": 1}, {})[1] == ["$.x"]
    assert json_diff({"a": {"b": 1}}, {"a": {"b": 2}})[0] == ["$.a.b: expected 1, got 2"]


# --- published examples -------------------------------------------------------------------


@pytest.mark.parametrize("name", TASK_PAYLOADS)
def test_published_task_payload_structures(name: str) -> None:
    resp = structure_task(load(name))
    assert isinstance(resp, TaskResponse)
    assert isinstance(resp.task, Task)
    assert resp.task_id == 123456789
    assert resp.task.user_id == 12345
    assert resp.task.scene == "NORMAL_CREATION"
    assert isinstance(resp.task.task_info, TaskInfo)
    assert all(isinstance(i, TaskInput) for i in resp.task.task_info.inputs)
    assert all(isinstance(a, TaskArgument) for a in resp.task.task_info.arguments)
    assert resp.task.task_info.extra_args == {}
    assert resp.task.task_info.callback_payloads == []
    assert resp.limitation is not None
    assert (resp.limitation.remaining, resp.limitation.limit) == (10000, 10000)
    assert resp.user_points == UserPoints(points=(), total=0)
    assert resp.user_tickets == UserTickets(ticket=())
    assert resp.edit_project is None


@pytest.mark.parametrize("name", TASK_PAYLOADS)
def test_published_task_payload_round_trips(name: str) -> None:
    wire = load(name)
    back = unstructure(structure_task(wire))
    mismatches, ignored = json_diff(wire, back)
    assert mismatches == []
    # The model knows every field the published examples carry.
    assert ignored == []
    # And the result is plain JSON again.
    assert json.loads(json.dumps(back)) == back


def test_kolors_example_details() -> None:
    resp = structure_task(load("kolors_elements_200.json"))
    assert resp.task is not None
    assert resp.task.task_info is not None
    assert resp.task.type == "mmu_multi_img2img_aiweb"
    assert resp.status == 5
    assert resp.status_name == "submitted"
    assert resp.status_final is False
    assert resp.message == ""
    assert resp.works == ()
    assert resp.state is TaskStatus.SUBMITTED
    assert not resp.is_final
    assert not resp.succeeded
    assert not resp.failed
    assert resp.urls == []
    assert resp.cover_urls == []
    first = resp.task.task_info.inputs[0]
    assert first == TaskInput(
        name="subject_image_0",
        input_type="URL",
        url="https://example.com/painting1.jpg",
    )
    assert [i.name for i in resp.task.task_info.inputs] == [
        "subject_image_0",
        "raw_subject_image_0",
        "subject_image_1",
        "scene_image",
    ]
    args = resp.arguments
    assert args["prompt"] == "A digital art gallery with modern paintings and sculptures on display"
    assert args["aspect_ratio"] == "16:9"
    assert args["imageCount"] == "1"
    assert args["kolors_version"] == "2.0"
    assert args["style"] == "默认"
    assert json.loads(args["imageList"] or "") == [
        {"top": 0, "left": 0, "width": 1, "height": 1},
        {"top": 0, "left": 0, "width": 1, "height": 1},
    ]
    assert args == resp.task.task_info.args
    assert resp.limitation == Limitation(
        type="mmu_multi_img2img_aiweb", remaining=10000, limit=10000
    )
    assert resp.created_at == datetime(2025, 4, 23, 2, 50, 11, 75000, tzinfo=UTC)
    assert resp.task.updated_at == resp.created_at


def test_image2video_example_details() -> None:
    resp = structure_task(load("image2video_elements_200.json"))
    assert resp.task is not None
    assert resp.task.type == "m2v_img2video_hq"
    assert resp.state is TaskStatus.SUBMITTED
    assert resp.arguments == {
        "prompt": "A museum gallery with artwork on display",
        "negative_prompt": "low quality, blurry, distorted",
        "duration": "5",
        "aspect_ratio": "16:9",
        "kling_version": "1.6",
        "imageList": '[{"top":0,"left":0,"width":1,"height":1},'
        '{"top":0,"left":0,"width":1,"height":1}]',
    }
    assert resp.limitation == Limitation(type="m2v_img2video_hq", remaining=10000, limit=10000)


def test_task_example_details() -> None:
    resp = structure_task(load("task_succeed_200.json"))
    assert resp.state is TaskStatus.SUCCEED
    assert resp.is_final
    assert resp.succeeded
    assert not resp.failed
    assert resp.message == "success"
    assert resp.eta_time == 0
    assert resp.eta_time_over_sla is False
    assert resp.queuing_eta_time == 0
    assert resp.origin_eta_time == 0
    assert resp.origin_queuing_eta_time == 0
    assert resp.urls == ["https://s21-kling.klingai.com/....mp4"]
    assert resp.cover_urls == ["https://s21-kling.klingai.com/....jpg"]
    (work,) = resp.works
    assert work == Work(
        work_id=123456789,
        work_item_id=0,
        task_id=123456789,
        user_id=12345,
        type="m2v_img2video_hq",
        status=99,
        status_name="succeed",
        status_final=True,
        content_type="video",
        resource=Resource(
            resource="https://s21-kling.klingai.com/....mp4",
            height=1268,
            width=724,
            duration=5041,
            resource_key="",
        ),
        cover=Resource(
            resource="https://s21-kling.klingai.com/....jpg",
            height=1268,
            width=724,
            duration=0,
            resource_key="",
        ),
        star_num=0,
        clone_count=0,
        report_num=0,
        create_time=1744858514515,
    )
    assert work.url == "https://s21-kling.klingai.com/....mp4"
    assert work.created_at == datetime(2025, 4, 17, 2, 55, 14, 515000, tzinfo=UTC)
    assert resp.task is not None
    assert resp.task.viewed is True
    assert resp.task.view_time == 1744916388016
    assert resp.created_at == datetime(2025, 4, 17, 2, 55, 14, 499000, tzinfo=UTC)
    assert resp.task.updated_at == datetime(2025, 4, 17, 3, 0, 23, 172000, tzinfo=UTC)
    assert resp.arguments == {
        "prompt": "A person dancing",
        "negative_prompt": "",
        "duration": "5",
        "kling_version": "2.0",
    }


def test_created_at_is_aware_utc_or_none() -> None:
    assert TaskResponse().created_at is None
    assert Task().created_at is None
    assert Task().updated_at is None
    assert Work().created_at is None
    when = Task(create_time=0).created_at
    assert when == datetime(1970, 1, 1, tzinfo=UTC)
    assert when is not None
    assert when.utcoffset() is not None


def test_asset_upload_example() -> None:
    wire = load("asset_upload_200.json")
    up = structure(wire, AssetUpload)
    assert up == AssetUpload(
        status=3,
        url="https://s21-kling.klingai.com/....jpg",
        message="",
        file_name="abc123def456789.jpg",
    )
    back = unstructure(up)
    assert json_diff(wire, back) == ([], [])
    assert set(back) == {"status", "url", "message", "fileName", "resourceUrl", "coverUrl"}


def test_asset_upload_video_fields() -> None:
    up = structure(
        {
            "status": 1,
            "url": "https://x/v.mp4",
            "message": "",
            "resourceUrl": "https://x/r.mp4",
            "coverUrl": "https://x/c.jpg",
        },
        AssetUpload,
    )
    assert up.resource_url == "https://x/r.mp4"
    assert up.cover_url == "https://x/c.jpg"


def test_account_example() -> None:
    wire = load("account_201.json")
    acct = structure(wire, Account)
    assert acct.email == "user@example.com"
    assert acct.max_jobs == 5
    assert acct.session == {
        "userId": "user12345",
        "ExpireTime": 123456789,
        "ExpireTimeUTC": "2025-01-01T12:13:14.000Z",
    }
    assert acct.balance is None
    # The (masked) password is never kept.
    assert "password" not in {f.name for f in attrs.fields(Account)}
    mismatches, ignored = json_diff(wire, unstructure(acct))
    assert mismatches == []
    assert ignored == ["$.password"]


def test_account_with_balance() -> None:
    balance = {"points": [], "tickets": [], "nextApplyTime": 0, "total": 66}
    acct = structure({"email": "a@b.c", "maxJobs": "3", "balance": balance}, Account)
    assert acct.max_jobs == 3
    assert acct.balance == balance


# --- tolerance ----------------------------------------------------------------------------


# --- status -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (5, "submitted", TaskStatus.SUBMITTED),
        (10, "processing", TaskStatus.PROCESSING),
        (50, "failed", TaskStatus.FAILED),
        (99, "succeed", TaskStatus.SUCCEED),
        (None, "succeed", TaskStatus.SUCCEED),
        (None, " Succeed ", TaskStatus.SUCCEED),
        (99, None, TaskStatus.SUCCEED),
        (5, None, TaskStatus.SUBMITTED),
        (10, None, TaskStatus.PROCESSING),
        (50, None, TaskStatus.FAILED),
        (77, "queued", TaskStatus.UNKNOWN),
        (None, "queued", TaskStatus.UNKNOWN),
        (77, None, TaskStatus.UNKNOWN),
        (None, None, TaskStatus.UNKNOWN),
        (None, "", TaskStatus.UNKNOWN),
        # The name wins over the number; an unknown name falls back to the number.
        (77, "processing", TaskStatus.PROCESSING),
        (5, "queued", TaskStatus.SUBMITTED),
    ],
)
def test_status_from_wire(status: int | None, name: str | None, expected: TaskStatus) -> None:
    assert TaskStatus.from_wire(status, name) is expected
    assert TaskResponse(status=status, status_name=name).state is expected


def test_status_enum() -> None:
    assert TaskStatus("no-such-state") is TaskStatus.UNKNOWN
    assert TaskStatus.SUBMITTED.code == 5
    assert TaskStatus.PROCESSING.code == 10
    assert TaskStatus.FAILED.code == 50
    assert TaskStatus.SUCCEED.code == 99
    assert TaskStatus.UNKNOWN.code is None
    assert isinstance(FINAL_STATUSES, frozenset)
    assert frozenset({TaskStatus.SUCCEED, TaskStatus.FAILED}) == FINAL_STATUSES


@pytest.mark.parametrize(
    ("wire", "final", "succeeded", "failed"),
    [
        # Unknown names and codes are not final unless the server says so.
        ({"status": 77, "status_name": "queued"}, False, False, False),
        ({"status": 77, "status_name": "queued", "status_final": False}, False, False, False),
        ({"status": 77, "status_name": "queued", "status_final": True}, True, False, True),
        ({"status": 77}, False, False, False),
        # Finality is never inferred from the number or the name alone.
        ({"status": 99}, False, False, False),
        ({"status": 99, "status_name": "succeed"}, False, False, False),
        ({"status": 50, "status_name": "failed"}, False, False, False),
        ({"status": 99, "status_name": "succeed", "status_final": True}, True, True, False),
        ({"status": 50, "status_name": "failed", "status_final": True}, True, False, True),
        # Only the task record carries the state (a callback body, say).
        (
            {"task": {"status": 99, "status_name": "succeed", "status_final": True}},
            True,
            True,
            False,
        ),
        ({"task": {"status": 50, "status_final": True}}, True, False, True),
    ],
)
def test_finality(wire: dict[str, Any], final: bool, succeeded: bool, failed: bool) -> None:
    resp = structure_task(wire)
    assert resp.is_final is final
    assert resp.succeeded is succeeded
    assert resp.failed is failed


def test_unknown_status_is_kept_on_the_wire() -> None:
    wire = {"status": 77, "status_name": "queued", "status_final": False}
    resp = structure_task(wire)
    assert resp.state is TaskStatus.UNKNOWN
    assert resp.state not in FINAL_STATUSES
    assert json_diff(wire, unstructure(resp)) == ([], [])


def test_failure_reason() -> None:
    assert TaskResponse(error="boom", message="m", status_name="failed").failure_reason == "boom"
    assert TaskResponse(message="m", status_name="failed").failure_reason == "m"
    assert TaskResponse(status_name="failed").failure_reason == "failed"
    assert TaskResponse().failure_reason == "unknown failure"


# --- helpers ------------------------------------------------------------------------------


def test_urls_and_cover_urls_skip_works_without_files() -> None:
    resp = TaskResponse(
        works=(
            Work(resource=Resource(resource="https://a/1.png"), cover=None),
            Work(resource=None, cover=Resource(resource="https://a/c.jpg")),
            Work(resource=Resource(resource=""), cover=Resource(resource=None)),
            Work(
                resource=Resource(resource="https://a/2.png"),
                cover=Resource(resource="https://a/d.jpg"),
            ),
        )
    )
    assert resp.urls == ["https://a/1.png", "https://a/2.png"]
    assert resp.cover_urls == ["https://a/c.jpg", "https://a/d.jpg"]


def test_arguments_helpers() -> None:
    info = TaskInfo(
        arguments=(
            TaskArgument(name="prompt", value="a"),
            TaskArgument(name=None, value="orphan"),
            TaskArgument(name="duration", value=None),
            TaskArgument(name="prompt", value="b"),
        )
    )
    assert info.args == {"prompt": "b", "duration": None}
    assert TaskResponse(task=Task(task_info=info)).arguments == {"prompt": "b", "duration": None}
    assert TaskResponse(task=Task()).arguments == {}


@pytest.mark.parametrize(
    ("eta", "queuing", "expected"),
    [
        (None, None, None),
        (30000, None, 30.0),
        (None, 45000, 45.0),
        (30000, 45000, 45.0),
        (1500, 0, 1.5),
        (0, 0, None),
        (-2000, None, None),  # a late estimate: no estimate
    ],
)
def test_eta_seconds(eta: int | None, queuing: int | None, expected: float | None) -> None:
    assert TaskResponse(eta_time=eta, queuing_eta_time=queuing).eta_seconds == expected


def test_models_are_frozen_and_keyword_only() -> None:
    resp = structure_task(load("task_succeed_200.json"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        resp.status = 5  # type: ignore[misc]
    assert resp.works[0].resource is not None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        resp.works[0].resource.resource = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Resource("https://x")  # type: ignore[misc]
    assert isinstance(resp.works, tuple)


# --- to_dict / to_json / from_dict --------------------------------------------------------
