output "function_urls" {
  description = "Deployed function name => HTTPS URL: the map the frontend is configured with (load balancer off; with it on the functions refuse direct requests and the frontend uses api_base_url)."
  value       = var.enable_load_balancer ? {} : { for name, function in module.function : function.name => function.uri if local.function_specs[name].trigger.type == "http" }
}

output "api_base_url" {
  description = "Single-origin base URL (https://<domain>/api) when the load balancer is enabled."
  value       = var.enable_load_balancer ? "https://${var.domain}/api" : null
}

output "lb_ip_address" {
  description = "Address the domain's DNS A record must point at (load balancer enabled)."
  value       = var.enable_load_balancer ? google_compute_global_address.api[0].address : null
}

output "jobs" {
  description = "Cloud Run job names."
  value       = [for job in google_cloud_run_v2_job.this : job.name]
}

output "image_repository" {
  description = "Artifact Registry path the job images are pushed to."
  value       = local.image_repository
}

output "buckets" {
  description = "Bucket names by role."
  value       = { for key, bucket in google_storage_bucket.this : key => bucket.name }
}

output "qdrant_url" {
  value = qdrant-cloud_accounts_cluster.this.url
}
