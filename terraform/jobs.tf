# Every Cloud Run job, from ONE map. Each key is a folder jobs/<key>/ built into the image
# <region>-docker.pkg.dev/<project>/zipkku/<key with hyphens>:<image_tag> (scripts/package.py writes its build
# context, Cloud Build pushes it); the job is named with hyphens. tests/test_infra.py checks map == folders.
#   generate_interior  started by Cloud Tasks and the sweep schedule (jobs.run WITHOUT overrides: it claims the
#                      interiors queued in Mongo)
#   import_catalog     started by on_catalog_uploaded (jobs.run with overrides: the catalog file)
# The jobs claim work with leases in Mongo, so a retried or duplicated run never duplicates work.
locals {
  jobs = {
    generate_interior = {
      cpu         = "2"
      memory      = "4Gi"
      timeout     = "1800s"
      max_retries = 1
      parallelism = 1
      # runtime account: generation only, so it cannot read the import's Qdrant manage key
      service_account = "worker"
      secrets         = ["mongodb_uri", "qdrant_read_key", "replicate_api_token", "detector_api_key"]
    }
    import_catalog = {
      cpu             = "1"
      memory          = "2Gi"
      timeout         = "3600s"
      max_retries     = 2
      parallelism     = 1
      service_account = "importer"
      secrets         = ["mongodb_uri", "qdrant_manage_key", "detector_api_key"]
    }
  }

  # What the queue's routing (messaging.tf) and GENERATE_JOB_NAME name; the job is deployed under it.
  generate_job_name = replace("generate_interior", "_", "-")

  image_repository = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

resource "google_artifact_registry_repository" "images" {
  location      = var.region
  repository_id = var.name_prefix
  description   = "Zipkku job images (one per folder in jobs/), tagged with the commit SHA."
  format        = "DOCKER"
  #checkov:skip=CKV_GCP_84:Google-managed encryption; the images hold code, no customer data, and CMEK would add a KMS key to operate without a requirement for it

  docker_config {
    immutable_tags = true
  }

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  depends_on = [google_project_service.this]
}

resource "google_cloud_run_v2_job" "this" {
  for_each = local.jobs

  name                = replace(each.key, "_", "-")
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = { app = "zipkku" }

  template {
    task_count  = 1
    parallelism = each.value.parallelism

    template {
      service_account = data.google_service_account.this[each.value.service_account].email
      timeout         = each.value.timeout
      max_retries     = each.value.max_retries

      # All egress through the connector and Cloud NAT: the address MongoDB Atlas admits (network.tf).
      vpc_access {
        connector = google_vpc_access_connector.egress.id
        egress    = "ALL_TRAFFIC"
      }

      containers {
        image = "${local.image_repository}/${replace(each.key, "_", "-")}:${var.image_tag}"

        resources {
          limits = {
            cpu    = each.value.cpu
            memory = each.value.memory
          }
        }

        dynamic "env" {
          # V4 signed URLs (the photo link sent to Replicate) are signed through IAM signBlob as the job's identity.
          for_each = merge(local.common_env, { SIGNING_SERVICE_ACCOUNT = data.google_service_account.this[each.value.service_account].email })
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          # detector_api_key only for a detector service of your own: the managed providers need no key, and
          # a secret without a version would stop the job from starting
          for_each = toset([for key in each.value.secrets : key if key != "detector_api_key" || local.detector_service])
          content {
            name = lookup(local.secret_env, env.value, upper(env.value))
            value_source {
              secret_key_ref {
                secret  = google_secret_manager_secret.this[env.value].secret_id
                version = "latest"
              }
            }
          }
        }
      }
    }
  }

  depends_on = [google_project_service.this, google_secret_manager_secret_iam_member.accessor]
}
