"""The simulator's JSON bodies, in the shapes the useapi.net pages publish.

Key order follows the published examples. All times are epoch milliseconds, as Kling's.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any, Final

from kling_async.testing.media import dimensions
from kling_async.testing.validation import KOLORS, VIDEO, Generation

if TYPE_CHECKING:
    from kling_async.testing.state import Account, SimTask

__all__ = [
    "TASK_TYPES",
    "account_model",
    "executing_item",
    "submission_model",
    "task_info",
    "task_model",
    "work_id",
    "works",
]

TASK_TYPES: Final = {KOLORS: "mmu_multi_img2img_aiweb", VIDEO: "m2v_img2video_hq"}
SCENE: Final = "NORMAL_CREATION"
SUBMITTED: Final = (5, "submitted", False)
PROCESSING: Final = (10, "processing", False)
SUCCEED: Final = (99, "succeed", True)
FAILED: Final = (50, "failed", True)
WORK_ID_FACTOR: Final = 10  # workId = taskId * 10 + index (imageCount <= 9)
PASSWORD: Final = "…secured…"  # noqa: S105 (what the API shows instead)


def work_id(task_id: int, index: int) -> int:
    """The workId of a task's ``index``-th work."""
    return task_id * WORK_ID_FACTOR + index


def _input(name: str, url: str) -> dict[str, Any]:
    return {
        "name": name,
        "inputType": "URL",
        "token": None,
        "blobStorage": None,
        "url": url,
        "cover": None,
        "fromWorkId": None,
    }


def task_info(gen: Generation) -> dict[str, Any]:
    """``task.taskInfo`` for a validated request."""
    inputs: list[dict[str, Any]] = []
    boxes = json.dumps(
        [{"top": 0, "left": 0, "width": 1, "height": 1}] * len(gen.images), separators=(",", ":")
    )
    if gen.task_type:  # a table endpoint: inputs by field name, the rest as arguments
        inputs = [_input(name, url) for name, url in gen.images]
        urls = {name for name, _ in gen.images}
        pairs = [
            (name, str(value).lower() if isinstance(value, bool) else str(value))
            for name, value in gen.values.items()
            if name not in urls and name not in ("maxJobs", "replyUrl", "replyRef")
        ]
    elif gen.is_video:
        for i, (_, url) in enumerate(gen.images):
            inputs += [_input(f"ref_img_{i}", url), _input(f"raw_ref_img_{i}", url)]
        pairs = [
            ("prompt", gen.prompt),
            ("negative_prompt", gen.negative_prompt),
            ("duration", str(gen.duration)),
            ("aspect_ratio", gen.aspect_ratio),
            ("kling_version", "3.0" if gen.model_name == "kling-v3-0" else "1.6"),
            ("imageList", boxes),
        ]
    else:
        subjects = [url for field, url in gen.images if field.startswith("subjectImage")]
        for i, url in enumerate(subjects):
            inputs += [_input(f"subject_image_{i}", url), _input(f"raw_subject_image_{i}", url)]
        for field, url in gen.images:
            if field in ("sceneImage", "styleImage"):
                inputs.append(
                    _input("scene_image" if field == "sceneImage" else "style_image", url)
                )
        pairs = [
            ("prompt", gen.prompt),
            ("aspect_ratio", gen.aspect_ratio),
            ("imageCount", str(gen.image_count)),
            ("kolors_version", "2.0"),
            ("img_resolution", "2k"),
            ("style", "默认"),
            ("imageList", boxes),
            ("biz", "klingai"),
        ]
    return {
        "type": gen.task_type or TASK_TYPES[gen.endpoint],
        "inputs": inputs,
        "arguments": [{"name": n, "value": v} for n, v in pairs],
        "extraArgs": {},
        "callbackPayloads": [],
        "scene": SCENE,
    }


def _task(task: SimTask, status: tuple[int, str, bool], updated: float) -> dict[str, Any]:
    return {
        "id": task.id,
        "userId": task.user_id,
        "type": task.info["type"],
        "scene": SCENE,
        "status": status[0],
        "status_name": status[1],
        "status_final": status[2],
        "taskInfo": task.info,
        "favored": False,
        "deleted": False,
        "viewed": False,
        "createTime": task.created_ms,
        "updateTime": task.ms(updated),
    }


def _tail(task: SimTask) -> dict[str, Any]:
    kind = task.info["type"]
    return {
        "limitation": {"type": kind, "remaining": 10000, "limit": 10000},
        "userPoints": {"points": [], "total": 0},
        "userTickets": {"ticket": []},
        "editProject": None,
    }


def submission_model(task: SimTask) -> dict[str, Any]:
    """The 200 answer of a generation endpoint (status 5, submitted)."""
    status = SUBMITTED
    return {
        "task": _task(task, status, task.created_at),
        "works": [],
        "status": status[0],
        "status_name": status[1],
        "status_final": status[2],
        "message": "",
        **_tail(task),
    }


def task_model(task: SimTask, at: float, *, eta: bool | str) -> dict[str, Any]:
    """The GET /tasks/{id} answer for ``task`` as of monotonic instant ``at``; ``eta``:
    the ETA fields in milliseconds (True), in whole seconds (``"seconds"``), or 0 (False)."""
    status = task.status_at(at)
    if status[2]:
        updated = task.final_at
        message = task.failure or "success"
    else:
        updated = task.started_at if status[1] == "processing" else task.created_at
        message = ""
    body_task = _task(task, status, updated)
    body_task["viewed"] = True
    body_task["viewTime"] = task.ms(at)
    eta_ms = queue_ms = origin_ms = origin_queue_ms = 0
    if eta:
        per_second = 1 if eta == "seconds" else 1000  # the pages do not say which it is
        if not status[2]:
            eta_ms = round((task.final_at - at) * per_second)
            queue_ms = max(0, round((task.started_at - at) * per_second))
        origin_ms = round(task.duration * per_second)
        origin_queue_ms = round((task.started_at - task.created_at) * per_second)
    return {
        "status": status[0],
        "status_name": status[1],
        "status_final": status[2],
        "etaTime": eta_ms,
        "etaTimeOverSla": False,
        "queuingEtaTime": queue_ms,
        "originEtaTime": origin_ms,
        "originQueuingEtaTime": origin_queue_ms,
        "message": message,
        "task": body_task,
        "works": works(task, at),
        **_tail(task),
    }


def _resource(url: str, width: int, height: int, duration_ms: int) -> dict[str, Any]:
    return {
        "resource": url,
        "height": height,
        "width": width,
        "duration": duration_ms,
        "resourceKey": "",
    }


def video_duration_ms(task: SimTask) -> int:
    """Length of a video result in milliseconds (Kling's are a little over the seconds)."""
    return task.request.duration * 1000 + 41


def works(task: SimTask, at: float) -> list[dict[str, Any]]:
    """``works`` as of ``at``: empty until the task has succeeded."""
    code, name, final = task.status_at(at)
    if name != "succeed":
        return []
    width, height = dimensions(task.request.aspect_ratio)
    base = f"{task.root_url}/files/{task.id}"
    common = {
        "taskId": task.id,
        "userId": task.user_id,
        "type": task.info["type"],
        "status": code,
        "status_name": name,
        "status_final": final,
    }
    tail = {"starNum": 0, "cloneCount": 0, "reportNum": 0, "createTime": task.created_ms + 16}
    if task.request.kind == "audio":
        return [
            {
                "workId": work_id(task.id, 0),
                "workItemId": 0,
                **common,
                "contentType": "audio",
                "resource": _resource(f"{base}/0.wav", 0, 0, video_duration_ms(task)),
                "cover": None,
                **tail,
            }
        ]
    if task.request.is_video:
        return [
            {
                "workId": work_id(task.id, 0),
                "workItemId": 0,
                **common,
                "contentType": "video",
                "resource": _resource(f"{base}/0.mp4", width, height, video_duration_ms(task)),
                "cover": _resource(f"{base}/cover.png", width, height, 0),
                **tail,
            }
        ]
    return [
        {
            "workId": work_id(task.id, i),
            "workItemId": i,
            **common,
            "contentType": "image",
            "resource": _resource(f"{base}/{i}.png", width, height, 0),
            "cover": None,
            **tail,
        }
        for i in range(task.request.work_count)
    ]


def _iso(ms: float) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def account_model(account: Account, now_ms: float, *, balance: bool) -> dict[str, Any]:
    """An account as GET /accounts[/email] shows it (``balance`` only for one account).

    An account out of credits shows a balance of 0; one in error state is shown as usual
    (the configuration is useapi.net's, only the Kling session is broken).
    """
    expire_ms = now_ms + 30 * 86_400_000
    model: dict[str, Any] = {
        "email": account.email,
        "session": {
            "userId": f"user{account.user_id}",
            "ExpireTime": int(expire_ms // 1000),
            "ExpireTimeUTC": _iso(expire_ms),
        },
        "maxJobs": account.max_jobs,
        "password": PASSWORD,
    }
    if balance:
        left = 0 if account.out_of_credits else 6600
        model["balance"] = {
            "points": [
                {
                    "orderId": f"sim-{account.user_id}",
                    "type": "reward",
                    "amount": 6600,
                    "balance": left,
                    "startTime": int(now_ms - 86_400_000),
                    "endTime": int(expire_ms),
                }
            ],
            "tickets": [],
            "nextApplyTime": 0,
            "total": left,
        }
    return model


def executing_item(task: SimTask, now: float) -> dict[str, Any]:
    """A job useapi.net is tracking, as GET /scheduler lists it."""
    elapsed = max(0, int(now - task.created_at))
    return {
        "id": task.id,
        "email": task.account,
        "started": _iso(task.created_ms),
        "elapsed": f"{elapsed // 60:02d}:{elapsed % 60:02d}",  # "MM:SS" per accounts.md
        "replyUrl": task.request.reply_url,
        "replyRef": task.request.reply_ref,
    }
