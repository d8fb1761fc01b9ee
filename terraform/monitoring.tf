# Monitoring from the structured logs (lib/log.py writes one JSON object per line; Cloud Logging keeps the
# message under jsonPayload.message and `extra={"json_fields": {...}}` as further jsonPayload fields).
#   generation outcomes  the generation job's one line per interior (lib/generation.py):
#                        "interior <id> done in <s>s" | "interior <id> failed: <REASON_CODE>"
#   stage durations      {"stage": "<generate|store|detect|match|...>", "duration_ms": <number>} in json_fields
#   5xx by function      Cloud Run's own request logs, so they also cover crashes the function could not log
locals {
  metric_prefix = "logging.googleapis.com/user"
}

resource "google_logging_metric" "generation_outcomes" {
  name        = "${var.name_prefix}/generation_outcomes"
  description = "Finished generations by outcome and failure reason."
  filter      = "resource.type=\"cloud_run_job\" AND jsonPayload.message=~\"^interior [^ ]+ (done in|failed:)\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key        = "outcome"
      value_type = "STRING"
    }
    labels {
      key        = "reason"
      value_type = "STRING"
    }
  }

  label_extractors = {
    outcome = "REGEXP_EXTRACT(jsonPayload.message, \"^interior [^ ]+ (done|failed)\")"
    reason  = "REGEXP_EXTRACT(jsonPayload.message, \"failed: ([A-Za-z0-9_]+)\")"
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "stage_durations" {
  name            = "${var.name_prefix}/stage_durations"
  description     = "Duration of each generation stage."
  filter          = "resource.type=\"cloud_run_job\" AND jsonPayload.stage:* AND jsonPayload.duration_ms:*"
  value_extractor = "EXTRACT(jsonPayload.duration_ms)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
    labels {
      key        = "stage"
      value_type = "STRING"
    }
  }

  label_extractors = {
    stage = "EXTRACT(jsonPayload.stage)"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 10
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_logging_metric" "http_5xx" {
  name        = "${var.name_prefix}/http_5xx"
  description = "HTTP responses with status >= 500, by function."
  filter      = "resource.type=\"cloud_run_revision\" AND logName=\"projects/${var.project_id}/logs/run.googleapis.com%2Frequests\" AND httpRequest.status>=500"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key        = "function"
      value_type = "STRING"
    }
  }

  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }

  depends_on = [google_project_service.this]
}

# A log-based metric can take up to 10 minutes to become usable in alert conditions: an alert policy created
# right after its metric fails with 404 "Cannot find metric(s)" (hashicorp/terraform-provider-google#11102).
# The policies on log-based metrics wait for this sleep, which starts again whenever one of those metrics is
# replaced (triggers).
resource "time_sleep" "log_metrics_available" {
  create_duration = "10m"

  triggers = {
    generation_outcomes = google_logging_metric.generation_outcomes.id
    http_5xx            = google_logging_metric.http_5xx.id
  }
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  display_name = "Zipkku alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }
}

locals {
  notification_channels = [for channel in google_monitoring_notification_channel.email : channel.id]

  # Time series the alerts and the dashboard both read.
  generation_outcomes_filter = "metric.type=\"${local.metric_prefix}/${google_logging_metric.generation_outcomes.name}\" AND resource.type=\"cloud_run_job\""
  http_5xx_filter            = "metric.type=\"${local.metric_prefix}/${google_logging_metric.http_5xx.name}\" AND resource.type=\"cloud_run_revision\""
  dead_letter_filter         = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\""
}

resource "google_monitoring_alert_policy" "generation_failures" {
  display_name          = "Zipkku: generation failure rate"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "failed / finished generations over 15 min > ${var.generation_failure_ratio_threshold}"
    condition_threshold {
      filter             = "${local.generation_outcomes_filter} AND metric.label.outcome=\"failed\""
      denominator_filter = local.generation_outcomes_filter
      comparison         = "COMPARISON_GT"
      threshold_value    = var.generation_failure_ratio_threshold
      duration           = "0s"

      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      denominator_aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "Generations are failing. Group the log-based metric by `reason` (dashboard) and read the job's logs: `jsonPayload.message=~\"^interior [^ ]+ failed:\"`. Failed generations refund the user's quota."
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.log_metrics_available]
}

resource "google_monitoring_alert_policy" "http_5xx" {
  display_name          = "Zipkku: 5xx responses"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "a function answered more than ${var.http_5xx_threshold} 5xx in 5 min"
    condition_threshold {
      filter          = local.http_5xx_filter
      comparison      = "COMPARISON_GT"
      threshold_value = var.http_5xx_threshold
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.function"]
      }
    }
  }

  documentation {
    content   = "A function is failing. 503s mean a dependency (Atlas, Qdrant) is down; 500s are bugs: search the function's logs for severity>=ERROR."
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.log_metrics_available]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "Zipkku: dead-lettered interior.finished messages"
  combiner              = "OR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "messages waiting in ${google_pubsub_subscription.dead_letter.name}"
    condition_threshold {
      filter          = local.dead_letter_filter
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "on_interior_finished could not take some messages after every retry. Pull them from the dead-letter subscription, fix the cause, and republish them to interior-finished."
    mime_type = "text/markdown"
  }
}

# One dashboard: a 2-column grid of charts, each one time-series filter.
locals {
  dashboard_charts = [
    {
      title    = "Generations by outcome and reason"
      plot     = "STACKED_BAR"
      filter   = local.generation_outcomes_filter
      aligner  = "ALIGN_DELTA"
      reducer  = "REDUCE_SUM"
      group_by = ["metric.label.outcome", "metric.label.reason"]
    },
    {
      title    = "Stage durations (p95, ms)"
      plot     = "LINE"
      filter   = "metric.type=\"${local.metric_prefix}/${google_logging_metric.stage_durations.name}\" AND resource.type=\"cloud_run_job\""
      aligner  = "ALIGN_DELTA"
      reducer  = "REDUCE_PERCENTILE_95"
      group_by = ["metric.label.stage"]
    },
    {
      title    = "5xx by function"
      plot     = "STACKED_BAR"
      filter   = local.http_5xx_filter
      aligner  = "ALIGN_DELTA"
      reducer  = "REDUCE_SUM"
      group_by = ["metric.label.function"]
    },
    {
      title    = "Request latency by function (p95)"
      plot     = "LINE"
      filter   = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\""
      aligner  = "ALIGN_DELTA"
      reducer  = "REDUCE_PERCENTILE_95"
      group_by = ["resource.label.service_name"]
    },
    {
      title    = "Generation queue depth"
      plot     = "LINE"
      filter   = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND resource.type=\"cloud_tasks_queue\" AND resource.label.queue_id=\"${google_cloud_tasks_queue.generate.name}\""
      aligner  = "ALIGN_MAX"
      reducer  = "REDUCE_NONE"
      group_by = []
    },
    {
      title    = "Dead-lettered messages"
      plot     = "LINE"
      filter   = local.dead_letter_filter
      aligner  = "ALIGN_MAX"
      reducer  = "REDUCE_NONE"
      group_by = []
    },
  ]
}

resource "google_monitoring_dashboard" "zipkku" {
  dashboard_json = jsonencode({
    displayName = "Zipkku"
    mosaicLayout = {
      columns = 48
      tiles = [
        for index, chart in local.dashboard_charts : {
          xPos   = (index % 2) * 24
          yPos   = floor(index / 2) * 16
          width  = 24
          height = 16
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [{
                plotType = chart.plot
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = chart.filter
                    aggregation = {
                      alignmentPeriod    = "300s"
                      perSeriesAligner   = chart.aligner
                      crossSeriesReducer = chart.reducer
                      groupByFields      = chart.group_by
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })
}
