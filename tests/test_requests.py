"""Request types: every validation rule, the escape hatch, and the exact request bodies."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import attrs
import pytest

from kling_async import (
    GenerationRequest,
    Image2VideoElements,
    KolorsElements,
    RequestValidationError,
)
from kling_async.convert import request_body, unstructure
from kling_async.requests import ASPECT_RATIOS_IMAGE, ASPECT_RATIOS_VIDEO, is_remote
from kling_async.testing.media import png

PAYLOADS = Path(__file__).parent / "payloads"
A = "https://example.com/a.jpg"
B = "https://example.com/b.jpg"
C = "https://example.com/c.jpg"
D = "https://example.com/d.jpg"
E = "https://example.com/e.jpg"
PNG = png(320, 320, (10, 20, 30))
PNG2 = png(300, 300, (40, 50, 60))


def kolors(**kwargs: Any) -> KolorsElements:
    kwargs.setdefault("subject_images", [A, B])
    return KolorsElements(**kwargs)


def video(**kwargs: Any) -> Image2VideoElements:
    kwargs.setdefault("prompt", "they dance")
    kwargs.setdefault("images", [A])
    return Image2VideoElements(**kwargs)


def wire_body(req: GenerationRequest) -> dict[str, Any]:
    """The request's wire body; convert.request_body (today's builder) must agree."""
    wire = req.to_wire()
    assert request_body(req) == wire
    return wire


def invalid(field: str, *fragments: str) -> Any:
    """pytest.raises for a RequestValidationError on ``field`` whose message has fragments."""

    class _Check:
        def __enter__(self) -> None:
            self._ctx = pytest.raises(RequestValidationError)
            self._info = self._ctx.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = self._ctx.__exit__(*exc)
            if not handled:  # another exception: let it propagate as is
                return False
            err = self._info.value
            assert err.field == field, str(err)
            assert str(err).startswith(f"{field}: "), str(err)
            for fragment in fragments:
                assert fragment in str(err), (fragment, str(err))
            return bool(handled)

    return _Check()


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    return path


# --- shared rules -------------------------------------------------------------------------


@pytest.mark.parametrize("make", [kolors, video])
@pytest.mark.parametrize("value", [0, 51, -1, True, False, "5", 5.0])
def test_max_jobs_out_of_range_or_wrong_type(make: Any, value: Any) -> None:
    with invalid("max_jobs", "1", "50"):
        make(max_jobs=value)


@pytest.mark.parametrize("make", [kolors, video])
@pytest.mark.parametrize("value", [1, 25, 50])
def test_max_jobs_in_range(make: Any, value: int) -> None:
    assert make(max_jobs=value).max_jobs == value


@pytest.mark.parametrize("make", [kolors, video])
@pytest.mark.parametrize(
    "value", ["ftp://x/y", "example.com/hook", "", "https://", "http://", 5, "/hook"]
)
def test_reply_url_must_be_http(make: Any, value: Any) -> None:
    with invalid("reply_url", "http(s) URL"):
        make(reply_url=value)


@pytest.mark.parametrize("make", [kolors, video])
@pytest.mark.parametrize("value", ["https://hook.example.com/x", "http://127.0.0.1:8080/cb"])
def test_reply_url_accepted(make: Any, value: str) -> None:
    assert make(reply_url=value).reply_url == value


@pytest.mark.parametrize("make", [kolors, video])
@pytest.mark.parametrize("value", ["user.example.com", "", 5, ["a@b.c"]])
def test_email_must_contain_at(make: Any, value: Any) -> None:
    with invalid("email", "e-mail"):
        make(email=value)


@pytest.mark.parametrize("make", [kolors, video])
def test_reply_ref_must_be_a_string(make: Any) -> None:
    with invalid("reply_ref", "string", "int"):
        make(reply_ref=5)


@pytest.mark.parametrize("make", [kolors, video])
@pytest.mark.parametrize("value", ["abc", 5, [("a", 1)], {1: "x"}])
def test_extra_must_be_a_mapping_of_names(make: Any, value: Any) -> None:
    with invalid("extra", "mapping"):
        make(extra=value)


@pytest.mark.parametrize("cls", [KolorsElements, Image2VideoElements])
def test_keyword_typos_are_type_errors(cls: type[GenerationRequest]) -> None:
    with pytest.raises(TypeError):
        cls(promt="x", subject_images=[A, B], images=[A])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        cls(prompt="x", subjectImage1=A)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        cls("positional")  # type: ignore[misc]


def test_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_jobs"):
        kolors(max_jobs=0)


# --- KOLORS -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 2500])
def test_kolors_prompt_length_ok(length: int) -> None:
    assert kolors(prompt="x" * length).prompt == "x" * length


def test_kolors_prompt_is_optional() -> None:
    assert kolors().prompt is None
    assert "prompt" not in wire_body(kolors())


def test_kolors_prompt_too_long() -> None:
    with invalid("prompt", "at most 2500 characters", "got 2501"):
        kolors(prompt="x" * 2501)


def test_kolors_prompt_wrong_type() -> None:
    with invalid("prompt", "must be a string", "int"):
        kolors(prompt=5)


def test_kolors_at_most_four_subject_images() -> None:
    assert len(kolors(subject_images=[A, B, C, D]).subject_images) == 4
    with invalid("subject_images", "at most 4 images", "got 5"):
        kolors(subject_images=[A, B, C, D, E])


@pytest.mark.parametrize(
    "images",
    [
        {"subject_images": [A, B]},
        {"subject_images": [A], "scene_image": B},
        {"subject_images": [A], "style_image": B},
        {"scene_image": A, "style_image": B},
        {"subject_images": [A, B, C, D], "scene_image": E, "style_image": E},
    ],
)
def test_kolors_two_images_in_any_combination(images: dict[str, Any]) -> None:
    req = KolorsElements(**images)
    assert len(req.image_inputs()) >= 2


@pytest.mark.parametrize(
    "images",
    [
        {},
        {"subject_images": []},
        {"subject_images": [A]},
        {"scene_image": A},
        {"style_image": A},
        {"subject_images": None, "scene_image": A},
    ],
)
def test_kolors_fewer_than_two_images(images: dict[str, Any]) -> None:
    with invalid("subject_images", "At least two images must be provided"):
        KolorsElements(**images)


@pytest.mark.parametrize("ratio", ASPECT_RATIOS_IMAGE)
def test_kolors_aspect_ratios(ratio: str) -> None:
    assert kolors(aspect_ratio=ratio).aspect_ratio == ratio


def test_kolors_aspect_ratio_list_is_the_documented_one() -> None:
    assert set(ASPECT_RATIOS_IMAGE) == {"1:1", "16:9", "4:3", "3:2", "2:3", "3:4", "9:16", "21:9"}


@pytest.mark.parametrize("ratio", ["5:4", "16x9", "", "16:9 ", 1.77])
def test_kolors_bad_aspect_ratio(ratio: Any) -> None:
    with invalid("aspect_ratio", "is not allowed", "'16:9'", "'21:9'", "extra="):
        kolors(aspect_ratio=ratio)


@pytest.mark.parametrize("count", [1, 5, 9])
def test_kolors_image_count_ok(count: int) -> None:
    assert kolors(image_count=count).image_count == count


@pytest.mark.parametrize("count", [0, 10, -1])
def test_kolors_image_count_out_of_range(count: int) -> None:
    with invalid("image_count", "from 1 to 9", f"got {count}"):
        kolors(image_count=count)


@pytest.mark.parametrize("count", [True, False, "3", 3.0, [3]])
def test_kolors_image_count_wrong_type(count: Any) -> None:
    with invalid("image_count", "must be an integer from 1 to 9"):
        kolors(image_count=count)


# --- image sources ------------------------------------------------------------------------


def test_local_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with invalid("subject_images[1]", "neither an http(s) URL nor an existing file", "nope.png"):
        kolors(subject_images=[A, str(missing)])
    with invalid("images[0]", "nope.png"):
        video(images=[missing])
    with invalid("scene_image", "nope.png"):
        kolors(subject_images=[A], scene_image=missing)


def test_a_directory_is_not_an_image(tmp_path: Path) -> None:
    with invalid("style_image", "existing file"):
        kolors(subject_images=[A], style_image=tmp_path)


def test_local_paths_and_bytes_are_accepted(image_file: Path) -> None:
    req = kolors(subject_images=[str(image_file), image_file, PNG], scene_image=bytearray(PNG2))
    assert req.subject_images == (str(image_file), image_file, PNG)
    vid = video(images=[image_file, PNG2])
    assert vid.images == (image_file, PNG2)


def test_empty_bytes() -> None:
    with invalid("subject_images[0]", "image bytes are empty"):
        kolors(subject_images=[b"", A])
    with invalid("images[0]", "image bytes are empty"):
        video(images=[bytearray()])


@pytest.mark.parametrize("value", [5, 1.5, None, ["nested"], {"url": A}])
def test_wrong_image_types(value: Any) -> None:
    with invalid("subject_images[1]", "expected an http(s) URL, a local path or bytes"):
        kolors(subject_images=[A, value])
    with invalid("images[0]", "expected an http(s) URL, a local path or bytes"):
        video(images=[value])


@pytest.mark.parametrize("value", [5, 1.5, object()])
def test_an_image_list_of_the_wrong_type(value: Any) -> None:
    with invalid("subject_images[0]", "expected an http(s) URL, a local path or bytes"):
        KolorsElements(subject_images=value, scene_image=A)
    with invalid("images[0]", "expected an http(s) URL, a local path or bytes"):
        Image2VideoElements(prompt="p", images=value)


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_image_string(value: str) -> None:
    with invalid("scene_image", "empty string"):
        kolors(subject_images=[A], scene_image=value)


@pytest.mark.parametrize("value", ["https://", "http://", "HTTPS://", "https:///path"])
def test_incomplete_image_url(value: str) -> None:
    with invalid("images[0]", "not a complete URL"):
        video(images=[value])


def test_a_lone_image_where_a_list_is_expected() -> None:
    assert video(images=A).images == (A,)
    assert KolorsElements(subject_images=A, scene_image=B).subject_images == (A,)
    assert KolorsElements(subject_images=(x for x in [A, B])).subject_images == (A, B)


def test_is_remote() -> None:
    assert is_remote("https://x/y")
    assert is_remote("HTTP://x/y")
    assert not is_remote("x/y.png")
    assert not is_remote(b"https://x")
    assert not is_remote(Path("https:/x"))
    assert is_remote("Https://x/y")
    assert not is_remote("https:/x/y")


def test_has_local_images(tmp_path: Path) -> None:
    local = tmp_path / "a.png"
    local.write_bytes(PNG)
    assert not KolorsElements(subject_images=[A, B], scene_image=A).has_local_images()
    assert KolorsElements(subject_images=[A, PNG]).has_local_images()
    assert KolorsElements(subject_images=[A, B], style_image=str(local)).has_local_images()
    assert not video(images=[A]).has_local_images()
    assert video(images=[local]).has_local_images()


# --- image2video --------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [None, "", "   "])
def test_video_prompt_required(prompt: Any) -> None:
    with invalid("prompt", "is required"):
        Image2VideoElements(prompt=prompt, images=[A])
    with invalid("prompt", "is required"):
        Image2VideoElements(images=[A])  # type: ignore[call-arg]


def test_video_prompt_length() -> None:
    assert video(prompt="x" * 2500).prompt == "x" * 2500
    with invalid("prompt", "at most 2500 characters"):
        video(prompt="x" * 2501)


def test_video_negative_prompt() -> None:
    assert video(negative_prompt="x" * 2500).negative_prompt == "x" * 2500
    assert video(negative_prompt="").negative_prompt == ""
    with invalid("negative_prompt", "at most 2500 characters"):
        video(negative_prompt="x" * 2501)
    with invalid("negative_prompt", "must be a string"):
        video(negative_prompt=["blurry"])


@pytest.mark.parametrize("images", [[], None, ()])
def test_video_needs_an_image(images: Any) -> None:
    with invalid("images", "At least one image (image_0, image_1, image_2 or image_3) is required"):
        Image2VideoElements(prompt="p", images=images)


def test_video_at_most_four_images() -> None:
    assert len(video(images=[A, B, C, D]).images) == 4
    with invalid("images", "at most 4 images", "got 5"):
        video(images=[A, B, C, D, E])


@pytest.mark.parametrize(("given", "kept"), [(5, 5), (10, 10), ("5", 5), ("10", 10), (" 10", 10)])
def test_video_duration_ok(given: Any, kept: int) -> None:
    assert video(duration=given).duration == kept


@pytest.mark.parametrize("value", [6, 0, "7", "five", "", 5.0, 10.0, True, "5.0", "²", [5]])
def test_video_bad_duration(value: Any) -> None:
    with invalid("duration", "5", "10"):
        video(duration=value)


@pytest.mark.parametrize("ratio", ASPECT_RATIOS_VIDEO)
def test_video_aspect_ratios(ratio: str) -> None:
    assert video(aspect_ratio=ratio).aspect_ratio == ratio


def test_video_aspect_ratio_list_is_the_documented_one() -> None:
    assert set(ASPECT_RATIOS_VIDEO) == {"16:9", "9:16", "1:1"}


@pytest.mark.parametrize("ratio", ["4:3", "21:9", "3:2"])
def test_video_rejects_image_only_aspect_ratios(ratio: str) -> None:
    with invalid("aspect_ratio", "is not allowed", "'16:9'", "'9:16'", "'1:1'"):
        video(aspect_ratio=ratio)


@pytest.mark.parametrize("mode", ["std", "pro"])
def test_video_modes(mode: str) -> None:
    assert video(mode=mode).mode == mode


@pytest.mark.parametrize("mode", ["fast", "STD", "", 1])
def test_video_bad_mode(mode: Any) -> None:
    with invalid("mode", "is not allowed", "'std'", "'pro'"):
        video(mode=mode)


def test_video_model_name() -> None:
    assert video(model_name="kling-v1-6").model_name == "kling-v1-6"
    assert video(model_name="kling-v3-0").model_name == "kling-v3-0"
    for bad in ("kling-v2-1", "kling-v3-0-turbo", "kling-v1-5"):
        with invalid("model_name", "is not allowed", "'kling-v1-6'", "extra="):
            video(model_name=bad)


@pytest.mark.parametrize("value", [True, False])
def test_video_enable_audio(value: bool) -> None:
    assert video(enable_audio=value).enable_audio is value


@pytest.mark.parametrize("value", ["true", 1, 0, "false"])
def test_video_enable_audio_type(value: Any) -> None:
    with invalid("enable_audio", "True or False"):
        video(enable_audio=value)


# --- request bodies -----------------------------------------------------------------------


def test_kolors_body_matches_the_published_example() -> None:
    published = json.loads((PAYLOADS / "kolors_elements_body.json").read_text(encoding="utf-8"))
    req = KolorsElements(
        email="user@example.com",
        prompt="A digital art gallery with modern paintings and sculptures on display",
        subject_images=[
            "https://example.com/painting1.jpg",
            "https://example.com/sculpture1.jpg",
            "https://example.com/painting2.jpg",
            "https://example.com/decoration.jpg",
        ],
        scene_image="https://example.com/gallery-background.jpg",
        style_image="https://example.com/art-style.jpg",
        aspect_ratio="16:9",
        image_count=1,
        reply_url="https://your-callback-url.com/webhook",
        reply_ref="your-reference-id",
    )
    assert wire_body(req) == published


def test_video_body_matches_the_published_example() -> None:
    published = json.loads(
        (PAYLOADS / "image2video_elements_body.json").read_text(encoding="utf-8")
    )
    req = Image2VideoElements(
        email="user@example.com",
        prompt="A museum gallery with artwork on display",
        images=[
            "https://example.com/image1.jpg",
            "https://example.com/image2.jpg",
            "https://example.com/image3.jpg",
            "https://example.com/image4.jpg",
        ],
        negative_prompt="low quality, blurry, distorted",
        duration=5,
        aspect_ratio="16:9",
        model_name="kling-v1-6",
        mode="std",
        reply_url="https://your-callback-url.com/webhook",
        reply_ref="your-reference-id",
    )
    assert wire_body(req) == published
    assert wire_body(req)["duration"] == "5"


def test_kolors_body_every_field() -> None:
    req = KolorsElements(
        prompt="p",
        subject_images=[A, B],
        scene_image=C,
        style_image=D,
        aspect_ratio="1:1",
        image_count=4,
        max_jobs=3,
        reply_url="https://hook/x",
        reply_ref="ref-1",
        email="a@b.c",
    )
    assert wire_body(req) == {
        "prompt": "p",
        "subjectImage1": A,
        "subjectImage2": B,
        "sceneImage": C,
        "styleImage": D,
        "aspect_ratio": "1:1",
        "imageCount": 4,
        "maxJobs": 3,
        "replyUrl": "https://hook/x",
        "replyRef": "ref-1",
        "email": "a@b.c",
    }


def test_video_body_every_field() -> None:
    req = Image2VideoElements(
        prompt="p",
        images=[A, B, C],
        negative_prompt="blurry",
        duration="10",
        aspect_ratio="9:16",
        model_name="kling-v1-6",
        mode="pro",
        enable_audio=False,
        max_jobs=50,
        reply_url="http://hook/x",
        reply_ref="r",
        email="a@b.c",
    )
    body = wire_body(req)
    assert body == {
        "prompt": "p",
        "image_0": A,
        "image_1": B,
        "image_2": C,
        "negative_prompt": "blurry",
        "duration": "10",
        "aspect_ratio": "9:16",
        "model_name": "kling-v1-6",
        "mode": "pro",
        "enable_audio": False,
        "maxJobs": 50,
        "replyUrl": "http://hook/x",
        "replyRef": "r",
        "email": "a@b.c",
    }
    assert json.loads(json.dumps(body))["enable_audio"] is False


def test_omitted_fields_are_absent_never_null() -> None:
    assert wire_body(KolorsElements(scene_image=A, style_image=B)) == {
        "sceneImage": A,
        "styleImage": B,
    }
    assert wire_body(Image2VideoElements(prompt="p", images=[A])) == {
        "prompt": "p",
        "image_0": A,
    }
    for body in (wire_body(kolors()), wire_body(video())):
        assert None not in body.values()


def test_subject_images_are_numbered_from_one_video_images_from_zero() -> None:
    assert set(wire_body(kolors(subject_images=[A, B, C]))) == {
        "subjectImage1",
        "subjectImage2",
        "subjectImage3",
    }
    assert set(wire_body(video(images=[A, B, C, D]))) - {"prompt"} == {
        "image_0",
        "image_1",
        "image_2",
        "image_3",
    }


def test_unstructure_gives_the_body() -> None:
    req = kolors(image_count=2)
    assert unstructure(req) == wire_body(req)
    vid = video(duration=10)
    assert unstructure(vid) == wire_body(vid)


@pytest.mark.parametrize(
    ("req_factory", "field"),
    [
        (lambda f: kolors(subject_images=[A, f]), "subject_images[1]"),
        (lambda f: kolors(subject_images=[PNG, A]), "subject_images[0]"),
        (lambda f: kolors(subject_images=[A], scene_image=f), "scene_image"),
        (lambda f: kolors(subject_images=[A], style_image=str(f)), "style_image"),
        (lambda f: video(images=[A, B, f]), "images[2]"),
        (lambda f: video(images=[bytearray(PNG)]), "images[0]"),
    ],
)
def test_local_images_must_be_uploaded_before_the_body(
    req_factory: Any, field: str, image_file: Path
) -> None:
    req = req_factory(image_file)
    with invalid(field, "must be uploaded first"):
        wire_body(req)


# --- image_inputs / with_image_urls -------------------------------------------------------


def test_image_inputs_and_with_image_urls(image_file: Path) -> None:
    req = KolorsElements(
        prompt="p", subject_images=[A, image_file], scene_image=PNG2, style_image=B
    )
    assert req.image_inputs() == {
        "subject_images[0]": A,
        "subject_images[1]": image_file,
        "scene_image": PNG2,
        "style_image": B,
    }
    done = req.with_image_urls({"subject_images[1]": C, "scene_image": D})
    assert done.image_inputs() == {
        "subject_images[0]": A,
        "subject_images[1]": C,
        "scene_image": D,
        "style_image": B,
    }
    assert done.prompt == "p"
    assert req.subject_images == (A, image_file)  # the original is unchanged
    assert wire_body(done) == {
        "prompt": "p",
        "subjectImage1": A,
        "subjectImage2": C,
        "sceneImage": D,
        "styleImage": B,
    }
    assert type(done) is KolorsElements


def test_video_image_inputs_and_with_image_urls() -> None:
    req = video(images=[PNG, A], duration="10", extra={"element_9": "x"})
    assert req.image_inputs() == {"images[0]": PNG, "images[1]": A}
    done = req.with_image_urls({"images[0]": B, "unrelated": C})
    assert done.images == (B, A)
    assert done.duration == 10
    assert done.extra == {"element_9": "x"}
    assert wire_body(done)["image_0"] == B


def test_with_image_urls_still_validates() -> None:
    with invalid("images[0]", "not a complete URL"):
        video(images=[PNG]).with_image_urls({"images[0]": "https://"})


def test_image_inputs_of_optional_images() -> None:
    assert kolors().image_inputs() == {"subject_images[0]": A, "subject_images[1]": B}
    assert kolors(image_count=None).image_count is None


# --- extra --------------------------------------------------------------------------------


def test_extra_is_sent_verbatim() -> None:
    extra = {"element_1": "https://x/e.jpg", "nested": {"a": [1, None]}, "flag": None}
    body = wire_body(video(extra=extra))
    assert body == {"prompt": "they dance", "image_0": A, **extra}


def test_extra_carries_a_newer_value_for_a_field_not_set_by_keyword() -> None:
    req = video(extra={"model_name": "kling-v3-0", "duration": "15"})
    assert req.model_name is None
    assert wire_body(req) == {
        "prompt": "they dance",
        "image_0": A,
        "model_name": "kling-v3-0",
        "duration": "15",
    }


@pytest.mark.parametrize(
    ("make", "extra", "names"),
    [
        (lambda e: kolors(prompt="p", extra=e), {"prompt": "other"}, "prompt"),
        (lambda e: kolors(extra=e), {"subjectImage2": C}, "subjectImage2"),
        (lambda e: video(duration=5, extra=e), {"duration": "10"}, "duration"),
        (
            lambda e: video(email="a@b.c", extra=e),
            {"email": "x@y.z", "image_0": B},
            "email, image_0",
        ),
    ],
)
def test_extra_never_silently_overrides_a_keyword(
    make: Any, extra: dict[str, Any], names: str
) -> None:
    # Found when the request is built, before anything is uploaded or sent.
    with invalid("extra", names, "also set by a keyword"):
        make(extra)


def test_extra_is_copied() -> None:
    extra = {"element_1": "x"}
    req = video(extra=extra)
    extra["element_2"] = "y"
    assert req.extra == {"element_1": "x"}
    assert video().extra == {}


# --- immutability, pickling ---------------------------------------------------------------


@pytest.mark.parametrize("req", [kolors(prompt="p"), video(duration=10)])
def test_requests_are_frozen(req: GenerationRequest) -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        req.max_jobs = 3  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        req.email = "a@b.c"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        req.unknown = 1  # type: ignore[attr-defined]


def test_requests_are_equal_by_value_and_pickle() -> None:
    assert kolors(prompt="p") == kolors(prompt="p")
    assert video(duration="5") == video(duration=5)
    req = kolors(prompt="p", image_count=2)
    assert pickle.loads(pickle.dumps(req)) == req


def test_endpoint_metadata() -> None:
    assert KolorsElements.endpoint == "images/kolors-elements"
    assert Image2VideoElements.endpoint == "videos/image2video-elements"
    assert KolorsElements.kind == "image"
    assert Image2VideoElements.kind == "video"
    assert issubclass(KolorsElements, GenerationRequest)
    assert issubclass(Image2VideoElements, GenerationRequest)
