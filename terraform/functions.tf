# Every function, from ONE map. Each key is a folder functions/<key>/main.py whose entry point is <key>; it is
# deployed as <key with hyphens> (tests/test_infra.py checks the map against the folders and the trigger type
# against the code, so a function cannot be added without its infrastructure).
#
#   trigger  { type = "http" }                        public HTTPS endpoint (auth happens in the function)
#            { type = "storage", bucket = <bucket> }  Eventarc google.cloud.storage.object.v1.finalized; Eventarc
#                                                     filters on the bucket only, the function filters the prefix
#                                                     (RAW_UPLOADS_PREFIX / CATALOG_PREFIX)
#            { type = "pubsub", topic = <topic> }     push subscription with a dead-letter topic
#   public   invokable by allUsers (only HTTP functions the frontend calls)
#   secrets  keys of local.secrets, injected as environment variables (named by local.secret_env or the key)
#   tokens   signs or checks access tokens, so it also gets the JWT key (no other function or job holds it)
# Anything left out takes local.function_defaults.
# memory of uploads_direct and on_upload_finalized (one photo per instance) comes from
# scripts/bench_image_memory.py at the default MAX_IMAGE_PIXELS and MAX_DECODED_IMAGE_BYTES: the worst accepted
# photo (a lossless WebP at the limit) peaks at ~600 MiB, plus twice the 20 MB request body in uploads_direct.
# Raise those limits and these memories together.
locals {
  function_defaults = {
    memory        = "512Mi"
    cpu           = null
    timeout       = 60
    min_instances = 0
    max_instances = 20
    concurrency   = 1
    public        = false
    env           = {}
    secrets       = ["mongodb_uri"]
    tokens        = false
  }

  functions = {
    auth_signup          = { trigger = { type = "http" }, public = true }
    auth_login           = { trigger = { type = "http" }, public = true, min_instances = 1, tokens = true }
    auth_refresh         = { trigger = { type = "http" }, public = true, tokens = true }
    auth_logout          = { trigger = { type = "http" }, public = true }
    me                   = { trigger = { type = "http" }, public = true, tokens = true }
    uploads_create       = { trigger = { type = "http" }, public = true, tokens = true }
    uploads_direct       = { trigger = { type = "http" }, public = true, memory = "1Gi", timeout = 120, tokens = true }
    uploads_get          = { trigger = { type = "http" }, public = true, tokens = true }
    interiors_generate   = { trigger = { type = "http" }, public = true, tokens = true }
    interiors_get        = { trigger = { type = "http" }, public = true, min_instances = 1, tokens = true }
    interiors_list       = { trigger = { type = "http" }, public = true, tokens = true }
    interiors_save       = { trigger = { type = "http" }, public = true, tokens = true }
    interiors_delete     = { trigger = { type = "http" }, public = true, tokens = true }
    notifications_read   = { trigger = { type = "http" }, public = true, tokens = true }
    styles_list          = { trigger = { type = "http" }, public = true, memory = "256Mi" }
    products_search      = { trigger = { type = "http" }, public = true }
    products_similar     = { trigger = { type = "http" }, public = true, secrets = ["mongodb_uri", "qdrant_read_key"] }
    ar_similar_objects   = { trigger = { type = "http" }, public = true }
    openapi              = { trigger = { type = "http" }, public = true, memory = "256Mi" }
    docs                 = { trigger = { type = "http" }, public = true, memory = "256Mi" }
    on_upload_finalized  = { trigger = { type = "storage", bucket = "uploads" }, memory = "1Gi", cpu = "1", timeout = 300, max_instances = 10 }
    on_catalog_uploaded  = { trigger = { type = "storage", bucket = "catalog" }, max_instances = 2 }
    on_interior_finished = { trigger = { type = "pubsub", topic = "interior_finished" }, max_instances = 10 }
  }

  # Settings every function and job reads (lib/config.py is the source of truth for the names).
  common_env = {
    ENVIRONMENT              = "production"
    GCP_PROJECT              = var.project_id
    GCP_REGION               = var.region
    MONGODB_DB               = var.mongodb_db
    CORS_ORIGINS             = join(",", var.cors_origins)
    UPLOADS_BUCKET           = google_storage_bucket.this["uploads"].name
    IMAGES_BUCKET            = google_storage_bucket.this["images"].name
    CATALOG_BUCKET           = google_storage_bucket.this["catalog"].name
    QDRANT_URL               = qdrant-cloud_accounts_cluster.this.url
    QDRANT_COLLECTION_PREFIX = var.qdrant_collection_prefix
    EMBEDDER_NAME            = var.embedder_name
    EMBEDDER_DIM             = tostring(var.embedder_dim)
    GENERATOR                = "replicate"
    REPLICATE_MODEL          = var.replicate_model
    REPLICATE_VERSION        = var.replicate_version
    DETECTOR                 = var.detector
    EMBEDDER                 = var.embedder
    DETECTOR_URL             = var.detector_url
    VERTEX_EMBEDDING_DIM     = tostring(var.vertex_embedding_dim)
    TASK_QUEUE               = "cloudtasks"
    TASKS_QUEUE_NAME         = google_cloud_tasks_queue.generate.name
    GENERATE_JOB_NAME        = local.generate_job_name
    IMPORT_JOB_NAME          = "import-catalog"
    JOB_RUNNER               = "cloudrun"
    EVENTS                   = "pubsub"
    INTERIOR_FINISHED_TOPIC  = google_pubsub_topic.this["interior_finished"].name
  }

  # Defaults applied, triggers resolved to real names; HTTP functions run as "api", event functions as "events".
  function_specs = {
    for name, spec in local.functions : name => merge(local.function_defaults, spec, {
      service_account = spec.trigger.type == "http" ? "api" : "events"
      secrets         = concat(lookup(spec, "tokens", false) ? ["jwt_secret"] : [], lookup(spec, "secrets", local.function_defaults.secrets))
      trigger = {
        type   = spec.trigger.type
        bucket = try(google_storage_bucket.this[spec.trigger.bucket].name, null)
        topic  = try(google_pubsub_topic.this[spec.trigger.topic].id, null)
      }
    })
  }
}

module "function" {
  source   = "./modules/function"
  for_each = local.function_specs

  name          = each.key
  project_id    = var.project_id
  region        = var.region
  source_bucket = google_storage_bucket.this["sources"].name
  source_object = "sources/${var.source_version}/${each.key}.zip"

  trigger              = each.value.trigger
  public               = each.value.public
  behind_load_balancer = var.enable_load_balancer
  memory               = each.value.memory
  cpu                  = each.value.cpu
  timeout_seconds      = each.value.timeout
  min_instances        = each.value.min_instances
  max_instances        = each.value.max_instances
  concurrency          = each.value.concurrency

  env = merge(local.common_env, each.value.env, {
    # V4 signed URLs are signed through IAM signBlob as the function's own identity.
    SIGNING_SERVICE_ACCOUNT = data.google_service_account.this[each.value.service_account].email
    # The load balancer appends the client's address and then its own to X-Forwarded-For (lib.http)
    CLIENT_ADDRESS_PROXY_HOPS = var.enable_load_balancer ? "1" : "0"
  })
  secrets = { for key in each.value.secrets : lookup(local.secret_env, key, upper(key)) => google_secret_manager_secret.this[key].secret_id }

  service_account_email         = data.google_service_account.this[each.value.service_account].email
  build_service_account         = data.google_service_account.this["builder"].id
  trigger_service_account_email = data.google_service_account.this["trigger"].email
  dead_letter_topic             = google_pubsub_topic.this["dead_letter"].id
  pubsub_service_agent          = local.pubsub_service_agent
  vpc_connector                 = google_vpc_access_connector.egress.id

  depends_on = [
    google_project_service.this,
    google_secret_manager_secret_iam_member.accessor,
  ]
}
