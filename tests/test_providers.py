"""Providers against local doubles of the services they call (Replicate, the detector), and the local
stand-ins on real images."""

from __future__ import annotations

import io
import time

import pytest

from lib import providers
from lib.providers import GenerationRequest, ProviderError
from tests.doubles import DetectorDouble, ReplicateDouble, jpeg


@pytest.fixture
def env(settings_env):
    settings_env(jwt_secret="x" * 40)  # no stack here: these tests need settings but no database
    return settings_env


@pytest.fixture
def replicate(env):
    double = ReplicateDouble().start()
    env(replicate_api_url=f"{double.url}/v1", replicate_api_token=double.token, replicate_deadline_seconds=5,
                 replicate_poll_seconds=0.02, replicate_retry_backoff_seconds=0.01, replicate_retries=2,
                 replicate_model="adirik/interior-design", replicate_version="")
    yield double
    double.stop()


REQUEST = GenerationRequest(image=jpeg(), room_type="living_room", style="scandinavian", prompt="warm light",
                            strength=0.7)


def _generate(request=REQUEST, seed=7):
    from lib.providers.replicate import ReplicateGenerator

    return ReplicateGenerator().generate(request, seed)


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def test_replicate_finishes_within_prefer_wait_and_maps_input(replicate):
    assert _is_jpeg(_generate())
    create = replicate.creates[0]
    assert create["path"] == "/v1/models/adirik/interior-design/predictions"
    assert create["headers"]["Prefer"] == "wait=60"
    assert create["headers"]["Authorization"] == "Bearer r8_test_token"
    data = create["body"]["input"]
    assert data["image"].startswith("data:image/jpeg;base64,") and data["seed"] == 7
    assert "scandinavian style living room" in data["prompt"] and "warm light" in data["prompt"]
    assert data["prompt_strength"] == 0.7
    assert replicate.gets == 0


def test_replicate_polls_get_url_with_pinned_version_and_controlnet_input(replicate, env):
    env(replicate_version="abc123", replicate_model="jagilley/controlnet-hough", replicate_wait_seconds=1)
    replicate.polls = 3
    request = GenerationRequest(image=b"", image_url="https://example.invalid/photo.jpg", room_type="bedroom",
                                style="boho")
    # Prefer: wait makes the double finish at once; drop it by answering "slow" to force polling
    replicate.plan = ["slow"]
    replicate.slow_seconds = 0.1
    assert _is_jpeg(_generate(request))
    create = replicate.creates[0]
    assert create["path"] == "/v1/predictions" and create["body"]["version"] == "abc123"
    assert create["body"]["input"]["image"] == "https://example.invalid/photo.jpg"
    assert create["body"]["input"]["num_samples"] == "1" and "n_prompt" in create["body"]["input"]
    assert replicate.gets >= 1


def test_replicate_list_output_takes_the_last_image(replicate):
    replicate.plan = ["list"]
    assert _is_jpeg(_generate())


@pytest.mark.parametrize("plan", [[500, "ok"], [429, 429, "ok"], ["malformed-then", "ok"]])
def test_replicate_retries_transient_errors_then_succeeds(replicate, plan):
    replicate.plan = [503 if p == "malformed-then" else p for p in plan]
    assert _is_jpeg(_generate())
    assert len(replicate.creates) == len(plan)


@pytest.mark.parametrize(("plan", "code", "retryable"), [
    ([402], providers.BILLING, False),
    ([401], providers.AUTH, False),
    ([422], providers.REJECTED_INPUT, False),
    (["nsfw"], providers.REJECTED_PROMPT, False),
    (["failed"], providers.FAILED, True),
    (["canceled"], providers.FAILED, False),
    (["aborted"], providers.FAILED, True),
    (["malformed"], providers.BAD_RESPONSE, True),
    (["no-output"], providers.BAD_RESPONSE, True),
    ([500, 500, 500], providers.UNAVAILABLE, True),
    ([429, 429, 429], providers.RATE_LIMIT, True),
])
def test_replicate_failures_become_reason_codes(replicate, plan, code, retryable):
    replicate.plan = list(plan)
    with pytest.raises(ProviderError) as caught:
        _generate()
    assert caught.value.code == code and caught.value.retryable is retryable
    assert len(replicate.creates) == (len(plan) if isinstance(plan[0], int) and retryable else 1)


def test_replicate_cancels_at_the_deadline(replicate, env):
    env(replicate_deadline_seconds=5, replicate_wait_seconds=1)
    replicate.plan = ["never"]
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        _generate()
    assert caught.value.code == providers.TIMEOUT and caught.value.retryable
    assert replicate.canceled == ["p1x"] and time.monotonic() - started < 8


def test_replicate_unreachable_is_retryable(env):
    from scripts.localstack import free_port

    env(replicate_api_url=f"http://127.0.0.1:{free_port()}/v1", replicate_retries=0, replicate_api_token="t")
    with pytest.raises(ProviderError) as caught:
        _generate()
    assert caught.value.code == providers.UNAVAILABLE and caught.value.retryable


# --- http detector ---------------------------------------------------------------------------------------

@pytest.fixture
def detector(env):
    double = DetectorDouble().start()
    env(detector_url=f"{double.url}/detect", detector_api_key="k-1")
    yield double
    double.stop()


def test_http_detector_parses_the_contract(detector):
    from lib.providers.http_detector import HttpDetector

    found = HttpDetector().detect(jpeg())
    assert [(d.label, d.confidence, d.bbox, d.embedding) for d in found] == [
        ("sofa", 0.91, (10, 20, 100, 50), [0.1, 0.2, 0.3])]
    assert detector.received[0]["headers"]["Authorization"] == "Bearer k-1"
    assert detector.received[0]["headers"]["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize(("reply", "code"), [
    (b"not json", providers.BAD_RESPONSE),
    ({"label": "sofa"}, providers.BAD_RESPONSE),
    ([{"label": "sofa", "confidence": 2, "bbox": [0, 0, 1, 1]}], providers.BAD_RESPONSE),
    ([{"label": "sofa", "confidence": 0.5, "bbox": [0, 0, -1, 1]}], providers.BAD_RESPONSE),
    ([{"label": "", "confidence": 0.5, "bbox": [0, 0, 1, 1]}], providers.BAD_RESPONSE),
    ([{"label": "sofa", "confidence": 0.5, "bbox": [0, 0, 1]}], providers.BAD_RESPONSE),
    ([{"label": "sofa", "confidence": 0.5, "bbox": [0, 0, 1, 1], "embedding": ["x"]}], providers.BAD_RESPONSE),
    (415, providers.INVALID_IMAGE),
    (429, providers.RATE_LIMIT),
    (500, providers.UNAVAILABLE),
])
def test_http_detector_rejects_bad_answers(detector, reply, code):
    from lib.providers.http_detector import HttpDetector

    detector.reply = reply
    with pytest.raises(ProviderError) as caught:
        HttpDetector().detect(jpeg())
    assert caught.value.code == code


# --- local generator -------------------------------------------------------------------------------------

def test_local_generator_is_deterministic_per_seed_and_blends_by_strength(env):
    from PIL import Image, ImageChops, ImageStat

    from lib.local.generator import LocalGenerator

    generator = LocalGenerator()
    photo = jpeg(640, 480)
    style = jpeg(256, 256, colour=(250, 20, 20), seed=3)
    request = GenerationRequest(image=photo, room_type="bedroom", style="boho", strength=0.8, style_image=style)
    first, again, other = generator.generate(request, 1), generator.generate(request, 1), generator.generate(request, 2)
    assert first == again and first != other
    out = Image.open(io.BytesIO(first))
    assert out.size == (640, 480) and out.format == "JPEG"

    def distance(data: bytes) -> float:
        diff = ImageChops.difference(Image.open(io.BytesIO(data)).convert("RGB"), Image.open(io.BytesIO(photo)))
        return sum(ImageStat.Stat(diff).mean)

    weak = generator.generate(GenerationRequest(image=photo, room_type="bedroom", style="boho", strength=0.0,
                                                style_image=style), 1)
    assert distance(weak) < 10 < distance(first)
    # without a reference picture the style name gives a deterministic palette
    plain = GenerationRequest(image=photo, room_type="bedroom", style="industrial", strength=1.0)
    assert generator.generate(plain, 0) == generator.generate(plain, 0)


@pytest.mark.parametrize("data", [b"", b"not an image", jpeg()[:200]])
def test_local_generator_refuses_unreadable_photos(env, data):
    from lib.local.generator import LocalGenerator

    with pytest.raises(ProviderError) as caught:
        LocalGenerator().generate(GenerationRequest(image=data, room_type="bedroom", style="boho"), 0)
    assert caught.value.code == providers.INVALID_IMAGE and not caught.value.retryable


def test_local_generator_refuses_a_tiny_photo(env):
    from PIL import Image

    from lib.local.generator import LocalGenerator

    tiny = io.BytesIO()
    Image.new("RGB", (20, 20), "white").save(tiny, "JPEG")
    with pytest.raises(ProviderError) as caught:
        LocalGenerator().generate(GenerationRequest(image=tiny.getvalue(), room_type="bedroom", style="boho"), 0)
    assert caught.value.code == providers.INVALID_IMAGE


@pytest.mark.parametrize("data", [b"", b"not an image", jpeg()[:200]])
def test_local_detector_refuses_unreadable_images(env, data):
    from lib.local.detector import LocalDetector

    with pytest.raises(ProviderError) as caught:
        LocalDetector().detect(data)
    assert caught.value.code == providers.INVALID_IMAGE and not caught.value.retryable
