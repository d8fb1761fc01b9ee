# The safety net for generation. Cloud Tasks starts one run per interior; if such a run crashes after its
# task's retries are used up, the interior would stay `running` with an expired lease. A run of
# generate-interior with no arguments claims every interior whose lease expired (and fails, with a refund,
# those out of attempts), so this schedule makes sure no request is left hanging.
resource "google_cloud_scheduler_job" "generation_sweep" {
  name             = "generate-interior-sweep"
  region           = var.region
  description      = "Re-run interiors whose generation runs crashed (expired leases)."
  schedule         = var.generation_sweep_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project_id}/locations/${var.region}/jobs/${google_cloud_run_v2_job.this["generate_interior"].name}:run"
    body        = base64encode("{}")
    headers     = { "Content-Type" = "application/json" }

    # The same identity the queue uses: it may run this job as it is (roles/run.invoker on it) and nothing else.
    oauth_token {
      service_account_email = data.google_service_account.this["tasks"].email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_project_service.this, google_cloud_run_v2_job_iam_member.runner]
}
