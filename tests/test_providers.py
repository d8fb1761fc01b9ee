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

# determinism, strength and what a redesign keeps: tests/test_local_standins.py (it needs a seeded catalog)


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


# --- managed providers: Cloud Vision and Vertex AI, against their doubles ----------------------------------

PROJECT, LOCATION = "zipkku-test", "europe-west1"


@pytest.fixture
def google(env, tmp_path):
    """The runtime identity's tokens come from the IAM double (its ADC file); the Vision and Vertex doubles
    accept only the tokens it issued, as Google's front ends accept only Google's."""
    from lib import clients
    from scripts.iam_double import IamDouble
    from scripts.localstack import ensure_signing_key
    from tests.doubles import VertexEmbeddingDouble, VisionDouble

    iam = IamDouble(ensure_signing_key(tmp_path), "zipkku-worker@zipkku-test.iam.gserviceaccount.com").start()
    vision = VisionDouble(iam.accepts_token).start()
    vertex = VertexEmbeddingDouble(iam.accepts_token, PROJECT, LOCATION).start()
    env(google_application_credentials=iam.write_adc(tmp_path / "adc.json"), gcp_project=PROJECT,
        vertex_location=LOCATION, vision_api_url=vision.url, vertex_api_url=vertex.url, detector="vision",
        embedder="vertex", google_api_retries=2, google_api_retry_backoff_seconds=0.01)
    clients.forget("google-api")
    yield type("Google", (), {"iam": iam, "vision": vision, "vertex": vertex})
    clients.forget("google-api")
    for double in (vision, vertex, iam):
        double.stop()


def _room(width: int = 960, height: int = 720) -> bytes:
    from scripts.journey import room_photo

    return room_photo(width, height)


def test_vision_detector_maps_objects_to_catalog_labels_and_embeds_each_crop(google):
    from lib.providers.vision import VisionDetector

    found = VisionDetector().detect(_room())
    # Couch and Sofa bed are one object (same label, overlapping): the better one stays. Person and Picture
    # frame are not furniture we sell.
    assert [(d.label, d.confidence) for d in found] == [("sofa", 0.93), ("lamp", 0.81), ("table", 0.77)]
    assert found[0].bbox == (86, 281, 384, 237)  # normalized (0.09, 0.39)-(0.49, 0.72) of 960x720
    request = google.vision.calls[0]["body"]["requests"][0]
    assert request["features"] == [{"type": "OBJECT_LOCALIZATION", "maxResults": 20}]
    # one embedding request per crop (the model takes one instance), 512-d unit vectors
    assert len(google.vertex.calls) == 3
    assert all(c["body"]["parameters"] == {"dimension": 512} for c in google.vertex.calls)
    assert all(len(d.embedding) == 512 and abs(sum(v * v for v in d.embedding) - 1) < 1e-4 for d in found)
    assert google.iam.token_calls == 1  # one token for every call of the process


def test_vision_zero_coordinates_left_out_of_the_json_are_zero(google):
    from lib.providers.vision import VisionDetector

    google.vision.objects = [("Bed", 0.9, (0.0, 0.0, 0.5, 0.5))]
    assert [d.bbox for d in VisionDetector().detect(_room(800, 600))] == [(0, 0, 400, 300)]


def test_vision_label_map_adds_and_drops_names(google, env):
    from lib.providers.vision import VisionDetector

    env(vision_label_map='{"Picture frame": "wall-art", "Lamp": ""}')
    assert [d.label for d in VisionDetector().detect(_room())] == ["sofa", "table", "wall-art"]


def test_vision_keeps_at_most_detector_max_parts_and_the_confident_ones(google, env):
    from lib.providers.vision import VisionDetector

    env(detector_max_parts=2)
    assert [d.label for d in VisionDetector().detect(_room())] == ["sofa", "lamp"]
    env(detector_max_parts=6, detector_min_confidence=0.8)
    assert [d.label for d in VisionDetector().detect(_room())] == ["sofa", "lamp"]


def test_vision_without_furniture_embeds_nothing(google):
    from lib.providers.vision import VisionDetector

    google.vision.objects = [("Person", 0.9, (0.1, 0.1, 0.5, 0.9))]
    assert VisionDetector().detect(_room()) == [] and google.vertex.calls == []


def test_managed_providers_retry_quota_and_outages_then_succeed(google):
    from lib.providers.vision import VisionDetector

    google.vision.plan = [429, 503]
    google.vertex.plan = [500]
    assert len(VisionDetector().detect(_room())) == 3
    assert len(google.vision.calls) == 1  # the two refusals never reached the method


def test_an_expired_token_is_renewed_once(google):
    from lib.providers.vision import VisionDetector

    VisionDetector().detect(_room())
    google.iam.expire_tokens()
    assert len(VisionDetector().detect(_room())) == 3
    assert google.iam.token_calls == 2


@pytest.mark.parametrize(("plan", "code", "retryable"), [
    ([429, 429, 429], providers.RATE_LIMIT, True),
    ([503, 503, 503], providers.UNAVAILABLE, True),
    ([403], providers.AUTH, False),
    (["malformed"], providers.BAD_RESPONSE, True),
    (["no-responses"], providers.BAD_RESPONSE, True),
    (["bad-vertices"], providers.BAD_RESPONSE, True),
    (["image-error"], providers.UNAVAILABLE, True),
])
def test_vision_failures_become_reason_codes(google, plan, code, retryable):
    from lib.providers.vision import VisionDetector

    google.vision.plan = list(plan)
    with pytest.raises(ProviderError) as caught:
        VisionDetector().detect(_room())
    assert (caught.value.code, caught.value.retryable) == (code, retryable)


def test_vision_refuses_images_before_sending_them(google):
    from lib.providers.vision import VisionDetector

    for data in (b"", b"not an image", jpeg()[:200]):
        with pytest.raises(ProviderError) as caught:
            VisionDetector().detect(data)
        assert caught.value.code == providers.INVALID_IMAGE and not caught.value.retryable
    assert google.vision.calls == []


def test_vision_quota_per_minute_ends_in_rate_limit(google, env):
    from lib.providers.vision import VisionDetector

    env(google_api_retries=0)
    google.vision.quota_per_minute = 1
    VisionDetector().detect(_room())
    with pytest.raises(ProviderError) as caught:
        VisionDetector().detect(_room())
    assert caught.value.code == providers.RATE_LIMIT and caught.value.retryable


def test_without_credentials_the_managed_detector_fails_with_auth(env, tmp_path):
    from lib import clients
    from lib.providers.vision import VisionDetector

    # no ADC file, no metadata server: google.auth finds no identity
    env(google_application_credentials=tmp_path / "missing.json", gce_metadata_host="127.0.0.1:9",
        detector="vision", embedder="vertex")
    clients.forget("google-api")
    with pytest.raises(ProviderError) as caught:
        VisionDetector().detect(_room())
    assert caught.value.code == providers.AUTH and not caught.value.retryable


def test_vertex_embedder_one_image_per_request_concurrently(google, env):
    from lib.embed import VertexEmbedder, embedder_identity, get_embedder

    env(vertex_embedding_dim=256, vertex_concurrency=4)
    google.vertex.latency = 0.1
    embedder = get_embedder()
    assert isinstance(embedder, VertexEmbedder) and embedder_identity() == ("vertex-multimodalembedding-001", 256)
    pictures = [jpeg(seed=i) for i in range(8)]
    started = time.monotonic()
    vectors = embedder.embed_images(pictures)
    elapsed = time.monotonic() - started
    assert len(vectors) == 8 and all(len(v) == 256 for v in vectors)
    assert all(len(c["body"]["instances"]) == 1 for c in google.vertex.calls)
    assert google.vertex.max_in_flight == 4 and elapsed < 0.8 * 8 * 0.1  # not one after another
    # same picture, same vector; a large picture is scaled down to 512 px before it is sent
    assert embedder.embed_images([pictures[0]]) == [vectors[0]]
    embedder.embed_images([jpeg(2000, 1500)])
    import base64

    from PIL import Image

    sent = base64.b64decode(google.vertex.calls[-1]["body"]["instances"][0]["image"]["bytesBase64Encoded"])
    assert max(Image.open(io.BytesIO(sent)).size) == 512


def test_vertex_embedder_errors(google):
    from lib.embed import EmbedError, EmbedUnavailable, VertexEmbedder

    embedder = VertexEmbedder()
    with pytest.raises(EmbedError) as caught:
        embedder.embed_images([b"not an image"])
    assert not isinstance(caught.value, EmbedUnavailable)  # this image is to blame: the import skips its row
    for plan in ([429, 429, 429], [503, 503, 503], [403], ["malformed"], ["short"], ["no-predictions"]):
        google.vertex.plan = list(plan)
        with pytest.raises(EmbedUnavailable):  # no image is to blame: the import shard fails and is retried
            embedder.embed_images([jpeg()])
        google.vertex.plan = []


def test_the_vertex_double_enforces_one_instance_and_the_dimensions(google):
    """What the real model refuses, so a client that sends it cannot pass here."""
    import base64

    from lib.providers.google_api import GoogleApiError, post_json, session

    image = {"image": {"bytesBase64Encoded": base64.b64encode(jpeg()).decode()}}
    url = f"{google.vertex.url}{google.vertex.path}"
    with pytest.raises(GoogleApiError) as caught:
        post_json(session(), url, {"instances": [image, image], "parameters": {"dimension": 512}})
    assert caught.value.status == 400 and "1 instance(s) is allowed" in caught.value.message
    with pytest.raises(GoogleApiError) as caught:
        post_json(session(), url, {"instances": [image], "parameters": {"dimension": 300}})
    assert caught.value.status == 400
    answer = post_json(session(), url, {"instances": [image]})
    assert len(answer["predictions"][0]["imageEmbedding"]) == 1408  # the model's default size
