# Cloud Tasks queue that starts the generation job (one task per interior, named after it, so duplicates are
# refused). Its retry policy matches lib/tasks.py queue_definition().
resource "google_cloud_tasks_queue" "generate" {
  name     = "generate-interior"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.generation_rate_per_second
    max_concurrent_dispatches = var.generation_max_concurrent
  }

  retry_config {
    max_attempts       = 5
    min_backoff        = "10s"
    max_backoff        = "300s"
    max_doublings      = 4
    max_retry_duration = "3600s"
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  # Queue-level routing: whatever a task says, it is sent to generate-interior's jobs.run with a token of the
  # tasks account. Whoever creates tasks (the api account) needs no actAs on that account and cannot send its
  # token anywhere else; the tasks account may only run the job as it is (roles/run.invoker, iam.tf), so a task
  # body carrying overrides is refused by Cloud Run. The run claims queued interiors from Mongo.
  http_target {
    http_method = "POST"
    uri_override {
      scheme = "HTTPS"
      host   = "run.googleapis.com"
      path_override {
        # the job's name, not a reference to the job: the job's environment names this queue
        path = "/v2/projects/${var.project_id}/locations/${var.region}/jobs/${local.generate_job_name}:run"
      }
      uri_override_enforce_mode = "ALWAYS"
    }
    oauth_token {
      service_account_email = data.google_service_account.this["tasks"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_service.this]
}

# interior.finished events, and the dead-letter topic their push subscription gives up to. The dead-letter
# topic has its own pull subscription so nothing dead-lettered is lost and the alert can count it.
locals {
  topics = {
    interior_finished = "interior-finished"
    dead_letter       = "interior-finished-dead-letter"
  }
}

resource "google_pubsub_topic" "this" {
  for_each = local.topics

  name                       = each.value
  message_retention_duration = "604800s"
  #checkov:skip=CKV_GCP_83:Google-managed encryption; messages carry only ids and statuses, and CMEK would add a KMS key to operate without a requirement for it
  labels = { app = "zipkku" }

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "dead_letter" {
  name                       = "interior-finished-dead-letter"
  topic                      = google_pubsub_topic.this["dead_letter"].id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}
