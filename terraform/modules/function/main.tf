# One Cloud Run function (gen2) from its source archive, with how it is invoked:
#   http     public (allUsers) or private; ingress from anywhere, or only through the load balancer (and internal
#            traffic) when behind_load_balancer, so its rate limits cannot be bypassed
#   storage  an Eventarc trigger on object finalize in one bucket, internal ingress
#   pubsub   a push subscription (OIDC) with retries and a dead-letter topic, internal ingress. A subscription
#            of our own rather than an Eventarc Pub/Sub trigger, because Eventarc's managed subscription cannot
#            carry a dead-letter policy. functions-framework turns the push body into the same CloudEvent
#            (google.cloud.pubsub.topic.v1.messagePublished).
locals {
  deployed_name = replace(var.name, "_", "-")
  is_http       = var.trigger.type == "http"
}

resource "google_cloudfunctions2_function" "this" {
  name        = local.deployed_name
  project     = var.project_id
  location    = var.region
  description = "Zipkku ${var.name} (${var.trigger.type})"
  labels      = { app = "zipkku", trigger = var.trigger.type }

  build_config {
    runtime         = var.runtime
    entry_point     = var.name
    service_account = var.build_service_account
    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    available_memory                 = var.memory
    available_cpu                    = var.cpu
    timeout_seconds                  = var.timeout_seconds
    min_instance_count               = var.min_instances
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    ingress_settings                 = local.is_http ? (var.behind_load_balancer ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL") : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = var.service_account_email
    environment_variables            = var.env
    vpc_connector                    = var.vpc_connector
    vpc_connector_egress_settings    = var.vpc_connector == null ? null : "ALL_TRAFFIC"

    dynamic "secret_environment_variables" {
      for_each = var.secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  dynamic "event_trigger" {
    for_each = var.trigger.type == "storage" ? [var.trigger.bucket] : []
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.storage.object.v1.finalized"
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = var.trigger_service_account_email
      event_filters {
        attribute = "bucket"
        value     = event_trigger.value
      }
    }
  }
}

# Public HTTP functions: anyone may call; the function checks the bearer token itself.
resource "google_cloud_run_v2_service_iam_member" "public" {
  count    = var.public ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# Event functions: only the trigger identity may invoke them.
resource "google_cloud_run_v2_service_iam_member" "trigger" {
  count    = local.is_http ? 0 : 1
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this.service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.trigger_service_account_email}"
}

resource "google_pubsub_subscription" "push" {
  count   = var.trigger.type == "pubsub" ? 1 : 0
  project = var.project_id
  name    = "${local.deployed_name}-push"
  topic   = var.trigger.topic

  ack_deadline_seconds       = min(600, max(10, var.timeout_seconds))
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.this.service_config[0].uri
    oidc_token {
      service_account_email = var.trigger_service_account_email
      audience              = google_cloudfunctions2_function.this.service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = var.dead_letter_topic
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expires, however quiet the topic is
  }
}

# The Pub/Sub service agent must be able to take messages off this subscription to dead-letter them.
resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  count        = var.trigger.type == "pubsub" ? 1 : 0
  project      = var.project_id
  subscription = google_pubsub_subscription.push[0].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${var.pubsub_service_agent}"
}
