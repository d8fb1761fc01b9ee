"""One settings object, read from the environment, validated once per process.

Every adapter (database, storage, queue, events, AI providers) is chosen here by configuration, never by
"if testing". Each field is read from the environment variable of the same name in any case (MONGODB_URI ->
mongodb_uri); values given to `Settings(...)` win over the environment. A plain pydantic model does this: what
pydantic-settings adds (dotenv, secrets directories, cloud sources) we do not use, and its import cost every
function's cold start ~20 ms. Secrets have no defaults in code: production injects them from Secret Manager as
environment variables; the local stack generates them once into `.local/` (see scripts/localstack.py).
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # --- deployment -------------------------------------------------------------------------------------
    environment: Literal["local", "production"] = "local"
    gcp_project: str = "zipkku-local"
    gcp_region: str = "europe-west1"

    # --- documents (MongoDB Atlas; SecantusDB locally) ----------------------------------------------------
    mongodb_uri: SecretStr = SecretStr("mongodb://127.0.0.1:27017/?retryWrites=false&directConnection=true")
    mongodb_db: str = "zipkku"
    # Each operation as a whole (pymongo's timeoutMS): an outage answers 503 after about this long.
    mongodb_timeout_ms: int = Field(default=3000, ge=100)

    # --- auth ---------------------------------------------------------------------------------------------
    # No default. Only processes that sign or check access tokens are given it (the auth and signed-in functions;
    # not the event functions, the jobs or the public catalog): lib.auth refuses to work without it.
    jwt_secret: SecretStr | None = Field(default=None, min_length=32)
    jwt_issuer: str = "zipkku"
    access_token_ttl_seconds: int = Field(default=900, ge=60)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=15 * 60, ge=1)
    # Per client address, per hour, whatever the account (lib.throttle)
    signups_per_address_per_hour: int = Field(default=10, ge=1)
    logins_per_address_per_hour: int = Field(default=60, ge=1)
    # A refresh token presented again this soon after its first use answers with a new pair of the same session
    # (two tabs refreshing at once) instead of signing the session out; 0 turns it off.
    refresh_reuse_grace_seconds: int = Field(default=30, ge=0, le=300)
    # argon2id cost; OWASP's second recommended profile (19 MiB, t=2, p=1)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_kib: int = Field(default=19 * 1024, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)

    # --- HTTP ---------------------------------------------------------------------------------------------
    cors_origins: list[str] = ["http://localhost:5173", "http://127.0.0.1:5173"]
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # How many trusted proxies append to X-Forwarded-For after Google's front end reported the client (0: the
    # function URLs; 1: behind the external load balancer, which appends the client and then its own address).
    client_address_proxy_hops: int = Field(default=0, ge=0, le=4)

    # --- Cloud Storage (fake-gcs-server locally via STORAGE_EMULATOR_HOST) --------------------------------
    uploads_bucket: str = "zipkku-uploads"
    images_bucket: str = "zipkku-images"
    catalog_bucket: str = "zipkku-catalog"
    raw_uploads_prefix: str = "raw/"
    catalog_prefix: str = "catalog/"
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    uploads_per_hour: int = Field(default=100, ge=1)  # new photo uploads per user (signed or direct)
    uploads_per_address_per_hour: int = Field(default=200, ge=1)  # the same, per client address
    max_image_pixels: int = Field(default=60_000_000, ge=10_000)
    # Memory of the decoded pixels (width x height x bytes per pixel of the decoded mode) of the formats that
    # decode at full size (PNG, WebP, HEIC); JPEG decodes reduced and is bounded by MAX_IMAGE_PIXELS.
    # terraform sizes uploads_direct / on_upload_finalized from scripts/bench_image_memory.py at these limits.
    max_decoded_image_bytes: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024)
    # Smallest photo the generators can redesign: both edges, and how elongated it may be (long / short).
    min_image_edge_px: int = Field(default=256, ge=32)
    max_image_aspect_ratio: float = Field(default=4.0, ge=1.0)
    max_image_edge_px: int = Field(default=2048, ge=256)
    thumbnail_edge_px: int = Field(default=384, ge=64)
    storage_timeout_seconds: float = Field(default=30, gt=0)  # one request
    storage_retry_seconds: float = Field(default=10, gt=0)  # all retries of one operation
    signed_put_ttl_seconds: int = Field(default=15 * 60, ge=60)
    signed_get_ttl_seconds: int = Field(default=15 * 60, ge=60)
    # Local only: PEM of a throwaway RSA key used to sign V4 URLs (production signs through IAM signBlob).
    signing_key_file: str = ""
    signing_service_account: str = ""
    # Production signing: the IAM Credentials API (a local double in tests and the signing benchmark), how
    # long one signBlob call and all retries of it may take (then 503), how many links of one answer are
    # signed at once, and how many signed GET links an instance keeps (per signing epoch; 0 keeps none).
    iam_credentials_url: str = "https://iamcredentials.googleapis.com"
    signing_timeout_seconds: float = Field(default=5.0, gt=0)
    signing_retry_seconds: float = Field(default=2.0, ge=0)
    signing_concurrency: int = Field(default=64, ge=1, le=256)
    signed_url_cache_size: int = Field(default=10_000, ge=0)

    # --- vectors (Qdrant Cloud; local on-disk mode) -------------------------------------------------------
    qdrant_url: str = ""
    qdrant_api_key: SecretStr = SecretStr("")
    qdrant_path: str = ":memory:"  # local mode when qdrant_url is empty
    # Collections are named "<prefix>__<embedder name>__<dim>": vectors of different embedders never mix.
    qdrant_collection_prefix: str = "products"
    qdrant_timeout_seconds: int = Field(default=10, ge=1)

    # --- AI providers -------------------------------------------------------------------------------------
    generator: Literal["local", "replicate"] = "local"
    # vision: Cloud Vision object localization (crops embedded by EMBEDDER); http: a detector service of your own
    detector: Literal["local", "http", "vision"] = "local"
    # vertex: Vertex AI multimodalembedding; http: the detector service's embedding endpoint
    embedder: Literal["local", "http", "vertex"] = "local"
    replicate_api_url: str = "https://api.replicate.com/v1"
    replicate_api_token: SecretStr = SecretStr("")
    replicate_model: str = "adirik/interior-design"
    replicate_version: str = ""
    replicate_deadline_seconds: int = Field(default=300, ge=5)
    detector_url: str = ""
    detector_api_key: SecretStr = SecretStr("")
    # http embedder: the detector service's embedding endpoint (default <detector_url>/embed), its model
    # name and vector size (needed to name the collection before the first call)
    embedder_url: str = ""
    embedder_name: str = "detector-clip"
    embedder_dim: int = Field(default=512, ge=2)
    # Managed providers over REST with the runtime identity's token (Application Default Credentials).
    vision_api_url: str = "https://vision.googleapis.com"
    # Extra or overriding Vision object names -> catalog labels, JSON ({"Ottoman": "pouf"}; "" drops a name).
    vision_label_map: str = ""
    vertex_api_url: str = ""  # default https://<location>-aiplatform.googleapis.com
    vertex_location: str = ""  # default GCP_REGION
    vertex_embedding_dim: int = 512  # 128, 256, 512 or 1408 (the model's sizes)
    vertex_concurrency: int = Field(default=8, ge=1, le=64)  # the model takes one image per request
    google_api_timeout_seconds: float = Field(default=30.0, gt=0)
    google_api_retries: int = Field(default=3, ge=0)
    google_api_retry_backoff_seconds: float = Field(default=1.0, ge=0)

    # --- generation: queue, job, events, quota ------------------------------------------------------------
    task_queue: Literal["local", "cloudtasks"] = "local"
    tasks_queue_name: str = "generate-interior"
    tasks_emulator_host: str = ""  # host:port of gcloud-tasks-emulator (contract tests only)
    tasks_service_account: str = ""
    generate_job_name: str = "generate-interior"
    import_job_name: str = "import-catalog"
    local_job_concurrency: int = Field(default=2, ge=1)
    # JOB_RUNNER=local: keep one warm worker process (imports and local models loaded) for jobs that ask for it
    local_warm_jobs: bool = True
    # How lib.cloudrun starts Cloud Run Jobs: "cloudrun" (Admin API jobs:run) or "local" (a subprocess)
    job_runner: Literal["local", "cloudrun"] = "local"
    import_batch_size: int = Field(default=64, ge=1)
    import_max_image_bytes: int = Field(default=15 * 1024 * 1024, ge=1024)
    # Catalog image URLs are fetched only over https from public addresses (lib.outbound), each download within
    # this many seconds. Trusted origins ("http://127.0.0.1:8000", comma-separated) are exempt: a catalog server
    # on a developer's machine. Production sets none.
    import_image_timeout_seconds: float = Field(default=20.0, gt=0)
    import_trusted_image_origins: list[str] = []
    catalog_cache_seconds: int = Field(default=60, ge=0)
    events: Literal["local", "pubsub"] = "local"
    # EVENTS=local: the server whose /<function-name> paths receive pushed messages (the dev server)
    local_events_push_url: str = ""
    interior_finished_topic: str = "interior-finished"
    generation_quota: int = Field(default=20, ge=0)
    generations_per_address_per_hour: int = Field(default=20, ge=1)  # generation requests per client address
    generation_quota_period_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    job_lease_seconds: int = Field(default=600, ge=10)
    # interiors-generate must enqueue the job and confirm it within this many seconds of storing the interior;
    # an interior it could not confirm (it answered 503) is failed and refunded, never generated.
    interior_enqueue_seconds: float = Field(default=20.0, ge=1)
    job_max_attempts: int = Field(default=3, ge=1)
    # Cloud Tasks -> Cloud Run Admin API `jobs/<name>:run`; the queue's retry policy (terraform mirrors it).
    cloud_run_api_url: str = "https://run.googleapis.com"
    tasks_max_attempts: int = Field(default=5, ge=1)
    tasks_min_backoff_seconds: float = Field(default=10.0, ge=0.1)
    tasks_max_backoff_seconds: float = Field(default=300.0, ge=0.1)
    # Replicate: seconds a create call may block (`Prefer: wait=N`, max 60), poll interval, transient retries.
    replicate_wait_seconds: int = Field(default=60, ge=1, le=60)
    replicate_poll_seconds: float = Field(default=1.0, gt=0)
    replicate_retries: int = Field(default=3, ge=0)
    replicate_retry_backoff_seconds: float = Field(default=1.0, ge=0)
    detector_timeout_seconds: float = Field(default=60.0, gt=0)
    # Local generator: long edge of the restyled image (the ONNX network works at 384 px anyway).
    local_generator_max_edge_px: int = Field(default=768, ge=64)
    # Results: at most this many detected parts per variant, and products matched per part.
    detector_max_parts: int = Field(default=6, ge=1)
    detector_min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    products_per_part: int = Field(default=4, ge=1, le=20)

    # --- local stack --------------------------------------------------------------------------------------
    local_dir: str = ".local"
    # Tests that run the production configuration against emulators and doubles on this machine: the
    # host:port of each, so ENVIRONMENT=production accepts exactly those loopback endpoints (and nothing else
    # on this machine; a non-loopback entry is refused).
    emulator_hosts: list[str] = []
    # Read by the Google client libraries themselves; declared so the production guard can check them.
    storage_emulator_host: str = ""
    pubsub_emulator_host: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """Environment variables named like the fields (case-insensitive), under the values given explicitly."""
        given = dict(data) if isinstance(data, dict) else {}
        given.pop("_env_file", None)  # accepted for callers written against pydantic-settings; no .env is read
        environment = {name.lower(): value for name, value in os.environ.items()}
        return {**{field: environment[field] for field in cls.model_fields if field in environment}, **given}

    @field_validator("cors_origins", "emulator_hosts", "import_trusted_image_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("vertex_embedding_dim")
    @classmethod
    def _vertex_sizes(cls, value: int) -> int:
        if value not in (128, 256, 512, 1408):
            raise ValueError("VERTEX_EMBEDDING_DIM must be 128, 256, 512 or 1408")
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _uri_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("MONGODB_URI must start with mongodb:// or mongodb+srv://")
        return value

    @model_validator(mode="after")
    def _production_runs_on_the_cloud(self) -> Settings:
        """A production process must never fall back to a local stand-in: a subprocess job runner or an
        in-process queue on a function instance would lose work silently, and the local AI providers are not in
        production artifacts at all (lib/local/). Fail at start instead."""
        if self.environment != "production":
            return self
        problems = [f"{name.upper()}={getattr(self, name)}"
                    for name in ("task_queue", "events", "job_runner", "generator", "detector", "embedder")
                    if getattr(self, name) == "local"]
        if not self.qdrant_url:
            problems.append("QDRANT_URL is empty")
        problems += _endpoints_off_the_cloud(self)
        if self.signing_key_file:
            problems.append("SIGNING_KEY_FILE is set (production signs URLs through IAM)")
        if problems:
            raise ValueError("production settings use local stand-ins: " + "; ".join(problems))
        return self


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _endpoints_off_the_cloud(s: Settings) -> list[str]:
    """Production endpoints must be the cloud's: an endpoint on this machine, or plain http, only when it is one
    of EMULATOR_HOSTS (which may only name this machine, so it never admits anything elsewhere)."""
    problems = [f"EMULATOR_HOSTS names {entry} (only 127.0.0.1 or localhost emulators may be named)"
                for entry in s.emulator_hosts if entry.rsplit(":", 1)[0] not in _LOOPBACK]
    allowed = {entry.lower() for entry in s.emulator_hosts}

    def check(name: str, value: str, *, url: bool) -> None:
        if not value:
            return
        parts = urllib.parse.urlsplit(value if "//" in value else f"//{value}")
        hosts = parts.netloc.rsplit("@", 1)[-1].split(",")  # a MongoDB URI may list several hosts
        local = [h for h in hosts if h.rsplit(":", 1)[0].lower() in _LOOPBACK or h.lower().startswith("[::1]")]
        if any(h.lower() not in allowed for h in local):
            problems.append(f"{name} points at this machine")
        elif url and parts.scheme == "http" and not local:
            problems.append(f"{name} is not https")

    check("MONGODB_URI", s.mongodb_uri.get_secret_value(), url=False)
    for name in ("qdrant_url", "iam_credentials_url", "cloud_run_api_url", "replicate_api_url", "vision_api_url",
                 "vertex_api_url", "detector_url", "embedder_url"):
        check(name.upper(), getattr(s, name), url=True)
    for name in ("tasks_emulator_host", "storage_emulator_host", "pubsub_emulator_host"):
        value = getattr(s, name)
        if value and value.split("//")[-1].lower() not in allowed:
            problems.append(f"{name.upper()} is set (an emulator) without being one of EMULATOR_HOSTS")
    return problems


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
