resource "google_project_service" "this" {
  for_each = toset([
    "aiplatform.googleapis.com", # Vertex AI multimodal embeddings (EMBEDDER=vertex)
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "compute.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "vision.googleapis.com", # Cloud Vision object localization (DETECTOR=vision)
    "vpcaccess.googleapis.com",
  ])

  service            = each.value
  disable_on_destroy = false
}
