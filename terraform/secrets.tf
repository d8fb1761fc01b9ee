# Secret Manager holds every credential; functions and jobs get them as environment variables.
#   jwt_secret           generated here (write-only: never in the state); bump var.jwt_secret_version to rotate
#   mongodb_uri          built from the Atlas cluster and a generated password (write-only); rotate with
#                        var.mongodb_password_version (changes the Atlas user and the secret together)
#   qdrant_api_key       the Qdrant Cloud database API key created in data_stores.tf
#   replicate_api_token  added by the operator: gcloud secrets versions add zipkku-replicate-api-token ...
#   detector_api_key     added by the operator, like the Replicate token
locals {
  secrets = ["jwt_secret", "mongodb_uri", "qdrant_api_key", "replicate_api_token", "detector_api_key"]
}

resource "google_secret_manager_secret" "this" {
  for_each = toset(local.secrets)

  secret_id = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  labels    = { app = "zipkku" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

ephemeral "random_password" "jwt_secret" {
  length  = 64
  special = false
}

resource "google_secret_manager_secret_version" "jwt_secret" {
  secret                 = google_secret_manager_secret.this["jwt_secret"].id
  secret_data_wo         = ephemeral.random_password.jwt_secret.result
  secret_data_wo_version = var.jwt_secret_version
}

ephemeral "random_password" "mongodb" {
  length  = 40
  special = false
}

resource "google_secret_manager_secret_version" "mongodb_uri" {
  secret = google_secret_manager_secret.this["mongodb_uri"].id
  secret_data_wo = format(
    "mongodb+srv://%s:%s@%s/?retryWrites=true&w=majority&appName=zipkku",
    mongodbatlas_database_user.app.username,
    ephemeral.random_password.mongodb.result,
    trimprefix(local.mongodb_srv, "mongodb+srv://"),
  )
  secret_data_wo_version = var.mongodb_password_version
}

resource "google_secret_manager_secret_version" "qdrant_api_key" {
  secret      = google_secret_manager_secret.this["qdrant_api_key"].id
  secret_data = qdrant-cloud_accounts_database_api_key_v2.app.key
}
