# Secret Manager holds every credential; functions and jobs get them as environment variables.
#   jwt_secret           generated here (write-only: never in the state); bump var.jwt_secret_version to rotate
#   mongodb_uri          built from the Atlas cluster and a generated password (write-only); rotate with
#                        var.mongodb_password_version (changes the Atlas user and the secret together)
#   qdrant_read_key      Qdrant Cloud database API key, read-only on the one products collection (data_stores.tf):
#                        products_similar and the generation job
#   qdrant_manage_key    Qdrant Cloud database API key with manage rights (creates the collection): the catalog
#                        import only
#   replicate_api_token  added by the operator: gcloud secrets versions add zipkku-replicate-api-token ...
#   detector_api_key     added by the operator, like the Replicate token
# The Qdrant keys reach Secret Manager write-only, but the qdrant-cloud provider returns each key as a computed
# attribute of its resource (no write-only argument, no ephemeral resource), so they ARE in the state: README
# "Deploy" says what that means for the state bucket.
locals {
  secrets = ["jwt_secret", "mongodb_uri", "qdrant_read_key", "qdrant_manage_key", "replicate_api_token", "detector_api_key"]

  # Environment variable a secret is injected as, where it is not the secret's own name in capitals.
  secret_env = {
    qdrant_read_key   = "QDRANT_API_KEY"
    qdrant_manage_key = "QDRANT_API_KEY"
  }
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

# A new version whenever a key is replaced (rotation: terraform apply -replace=<key resource>), created before
# the old one is removed so "latest" always works.
resource "google_secret_manager_secret_version" "qdrant_read_key" {
  secret         = google_secret_manager_secret.this["qdrant_read_key"].id
  secret_data_wo = qdrant-cloud_accounts_database_api_key_v2.read.key

  lifecycle {
    create_before_destroy = true
    replace_triggered_by  = [qdrant-cloud_accounts_database_api_key_v2.read]
  }
}

resource "google_secret_manager_secret_version" "qdrant_manage_key" {
  secret         = google_secret_manager_secret.this["qdrant_manage_key"].id
  secret_data_wo = qdrant-cloud_accounts_database_api_key_v2.manage.key

  lifecycle {
    create_before_destroy = true
    replace_triggered_by  = [qdrant-cloud_accounts_database_api_key_v2.manage]
  }
}
