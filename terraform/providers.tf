provider "google" {
  project = var.project_id
  region  = var.region
}

# Atlas credentials come from the environment (MONGODB_ATLAS_PUBLIC_API_KEY / MONGODB_ATLAS_PRIVATE_API_KEY or
# a service account's MONGODB_ATLAS_CLIENT_ID / MONGODB_ATLAS_CLIENT_SECRET), never from this repository.
provider "mongodbatlas" {}

# QDRANT_CLOUD_API_KEY comes from the environment; the account is a variable.
provider "qdrant-cloud" {
  account_id = var.qdrant_account_id
}

data "google_project" "this" {
  project_id = var.project_id
}
