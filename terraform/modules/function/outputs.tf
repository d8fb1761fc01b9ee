output "name" {
  description = "Deployed (hyphenated) name."
  value       = google_cloudfunctions2_function.this.name
}

output "uri" {
  description = "HTTPS URL of the function."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}

output "service" {
  description = "The Cloud Run service behind the function (for serverless NEGs)."
  value       = google_cloudfunctions2_function.this.service_config[0].service
}
