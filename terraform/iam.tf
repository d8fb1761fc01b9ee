# One service account per role, each granted only what its role needs, on the narrowest resource that
# carries the permission (bucket, secret, queue, topic, job, service account). No basic roles anywhere.
# The accounts themselves, their account-level and project-level grants and the custom job-runner role are made
# by terraform/bootstrap (run by a project administrator), so the deployer holds no IAM admin role: see the
# account list there. This file grants on resources this configuration creates.
locals {
  service_accounts = {
    api      = "Zipkku HTTP functions"
    events   = "Zipkku event functions"
    worker   = "Zipkku generation job"
    importer = "Zipkku catalog import job"
    tasks    = "Zipkku Cloud Tasks caller"
    trigger  = "Zipkku event delivery"
    builder  = "Zipkku function builds"
  }

  pubsub_service_agent = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Each identity may read exactly the secrets its functions and jobs declare ("account/secret" pairs).
  secret_grants = {
    for grant in distinct(concat(
      flatten([for spec in local.function_specs : [for key in spec.secrets : "${spec.service_account}/${key}"]]),
      flatten([for job in local.jobs : [for key in job.secrets : "${job.service_account}/${key}"]]),
    )) : grant => { account = split("/", grant)[0], secret = split("/", grant)[1] }
  }

  # Object access per account and bucket. A V4 signed URL works only if its signer may read the object, so an
  # account that signs links into a bucket reads it: api signs the catalog's product images, style pictures and
  # .glb models (lib/catalog.py).
  #   events  on_upload_finalized normalizes raw uploads into images; on_catalog_uploaded only starts the import
  #           job (it never reads the catalog file)
  #   worker    generation reads the normalized photo and writes variants in images (never uploads)
  #   importer  the catalog import reads catalog files and their gs:// images
  bucket_grants = {
    "api/uploads"      = { account = "api", bucket = "uploads", role = "roles/storage.objectUser" }
    "api/images"       = { account = "api", bucket = "images", role = "roles/storage.objectUser" }
    "api/catalog"      = { account = "api", bucket = "catalog", role = "roles/storage.objectViewer" }
    "events/uploads"   = { account = "events", bucket = "uploads", role = "roles/storage.objectUser" }
    "events/images"    = { account = "events", bucket = "images", role = "roles/storage.objectUser" }
    "worker/images"    = { account = "worker", bucket = "images", role = "roles/storage.objectUser" }
    "importer/catalog" = { account = "importer", bucket = "catalog", role = "roles/storage.objectViewer" }
  }
}

data "google_service_account" "this" {
  for_each = local.service_accounts

  account_id = "${var.name_prefix}-${each.key}"
}

# Moved to terraform/bootstrap: an existing deployment forgets them here without destroying them (README
# "Deploy" says how bootstrap adopts them).
removed {
  from = google_service_account.this
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_service_account_iam_member.api_signs_as_itself
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_service_account_iam_member.worker_signs_as_itself
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_service_account_iam_member.pubsub_mints_trigger_tokens
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_project_iam_member.builder
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_project_iam_member.storage_agent_publishes
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_project_iam_member.trigger_receives_events
  lifecycle {
    destroy = false
  }
}

removed {
  from = google_project_iam_custom_role.job_runner
  lifecycle {
    destroy = false
  }
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_grants

  secret_id = google_secret_manager_secret.this[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${data.google_service_account.this[each.value.account].email}"
}

resource "google_storage_bucket_iam_member" "objects" {
  for_each = local.bucket_grants

  bucket = google_storage_bucket.this[each.value.bucket].name
  role   = each.value.role
  member = "serviceAccount:${data.google_service_account.this[each.value.account].email}"
}

# Enqueueing: interiors_generate (api) creates tasks in the generation queue, and nothing else. The queue's own
# routing (messaging.tf) gives every task the tasks account's token, so api needs no actAs on that account.
resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  name     = google_cloud_tasks_queue.generate.name
  location = var.region
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${data.google_service_account.this["api"].email}"
}

# Starting jobs. The queue and the sweep schedule (tasks) run generate-interior as it is: roles/run.invoker on
# the job carries run.jobs.run and not run.jobs.runWithOverrides, so no task can choose the worker's arguments
# or environment. on_catalog_uploaded (events) starts import-catalog with the catalog file as an argument, so
# it holds the custom job-runner role (bootstrap: run.jobs.run + run.jobs.runWithOverrides), on that job only.
locals {
  job_runner_role = "projects/${var.project_id}/roles/${replace(var.name_prefix, "-", "_")}_job_runner"
}

resource "google_cloud_run_v2_job_iam_member" "runner" {
  for_each = {
    "tasks/generate_interior" = { account = "tasks", job = "generate_interior", role = "roles/run.invoker" }
    "events/import_catalog"   = { account = "events", job = "import_catalog", role = local.job_runner_role }
  }

  name     = google_cloud_run_v2_job.this[each.value.job].name
  location = var.region
  role     = each.value.role
  member   = "serviceAccount:${data.google_service_account.this[each.value.account].email}"
}

# The generation job announces finished interiors.
resource "google_pubsub_topic_iam_member" "worker_publishes" {
  topic  = google_pubsub_topic.this["interior_finished"].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${data.google_service_account.this["worker"].email}"
}

# Pub/Sub push with OIDC: the Pub/Sub service agent mints tokens for the trigger identity (bootstrap grants
# that)...
# ...and forwards undeliverable messages to the dead-letter topic.
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  topic  = google_pubsub_topic.this["dead_letter"].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${local.pubsub_service_agent}"
}
