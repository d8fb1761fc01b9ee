# One-time bootstrap, run by a project administrator with local state (it holds no secrets):
#   cd terraform/bootstrap && terraform init && terraform apply -var project_id=<project>
# It creates the bucket that holds the main configuration's remote state, the identity Cloud Build deploys with,
# and everything that needs project-wide IAM rights, so the deployer needs none: the runtime service accounts
# and their project-level and account-level grants, and the custom job-runner role. Re-run it (as an
# administrator) when one of those changes. Then:
#   cd .. && terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=zipkku/prod"
terraform {
  required_version = ">= 1.11.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "7.17.0"
    }
  }
}

variable "project_id" {
  description = "Google Cloud project that hosts Zipkku."
  type        = string
}

variable "region" {
  type    = string
  default = "europe-west1"
}

variable "name_prefix" {
  description = "The main configuration's var.name_prefix (service accounts, secrets and buckets are named after it)."
  type        = string
  default     = "zipkku"
}

provider "google" {
  project = var.project_id
  region  = var.region
}

resource "google_project_service" "this" {
  for_each = toset([
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
  ])

  service            = each.value
  disable_on_destroy = false
}

# Versioned, so a damaged state can be restored from an earlier generation.
resource "google_storage_bucket" "state" {
  name                        = "${var.project_id}-tfstate"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  #checkov:skip=CKV_GCP_62:access to the state is audited through Cloud Audit Logs

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 50
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}

data "google_project" "this" {
  project_id = var.project_id
}

data "google_storage_project_service_account" "this" {
  depends_on = [google_project_service.this]
}

# --- runtime identities (the main configuration reads them with data sources) ---------------------------------
# One service account per role, each granted only what its role needs (terraform/iam.tf grants the rest on the
# narrowest resource):
#   api      runtime of the HTTP functions
#   events   runtime of the CloudEvent functions
#   worker   runtime of the generation job
#   importer runtime of the catalog import job (the only holder of the Qdrant manage key)
#   tasks    identity the generation queue and the sweep schedule start generate-interior with (no overrides)
#   trigger  identity Eventarc and the Pub/Sub push subscription use to invoke event functions
#   builder  identity Cloud Functions builds the function images with (no reliance on default accounts)
locals {
  service_accounts = {
    api      = "Zipkku HTTP functions"
    events   = "Zipkku event functions"
    worker   = "Zipkku generation job"
    importer = "Zipkku catalog import job"
    tasks    = "Zipkku Cloud Tasks caller"
    trigger  = "Zipkku event delivery"
    builder  = "Zipkku function builds"
  }

  runtime_member       = { for key, account in google_service_account.runtime : key => "serviceAccount:${account.email}" }
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_service_account" "runtime" {
  for_each = local.service_accounts

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value
}

# Signed URLs are signed with IAM signBlob as the runtime's own identity: the HTTP functions sign links for
# clients, the generation job signs the photo link it sends to Replicate.
resource "google_service_account_iam_member" "signs_as_itself" {
  for_each = toset(["api", "worker"])

  service_account_id = google_service_account.runtime[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.runtime_member[each.key]
}

# Pub/Sub push with OIDC: the Pub/Sub service agent mints tokens for the trigger identity.
resource "google_service_account_iam_member" "pubsub_mints_trigger_tokens" {
  service_account_id = google_service_account.runtime["trigger"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent

  depends_on = [google_project_service.this]
}

# Project-level by the products' design: function builds (the role Cloud Run functions documents for a custom
# build account), Cloud Storage's service agent publishing object events, and the trigger identity receiving them.
resource "google_project_iam_member" "runtime" {
  for_each = {
    "builder/cloudbuild.builds.builder" = { role = "roles/cloudbuild.builds.builder", member = local.runtime_member["builder"] }
    "storage-agent/pubsub.publisher"    = { role = "roles/pubsub.publisher", member = "serviceAccount:${data.google_storage_project_service_account.this.email_address}" }
    "trigger/eventarc.eventReceiver"    = { role = "roles/eventarc.eventReceiver", member = local.runtime_member["trigger"] }
  }
  #checkov:skip=CKV_GCP_49:cloudbuild.builds.builder is the role Cloud Run functions documents for a custom build service account; it runs builds only, not as other accounts

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

# Starting a job with overrides, and nothing else (predefined run roles with overrides also allow editing jobs):
# on_catalog_uploaded starts import-catalog with the catalog file as an argument (terraform/iam.tf binds it on
# that job only).
resource "google_project_iam_custom_role" "job_runner" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_job_runner"
  title       = "Zipkku job runner"
  description = "Run a Cloud Run job with container overrides."
  permissions = ["run.jobs.run", "run.jobs.runWithOverrides"]
}

# Vertex AI embeddings (EMBEDDER=vertex, the default): online predictions of Google's multimodalembedding model
# and nothing else (roles/aiplatform.user would add a few hundred permissions: training, datasets, endpoints).
# The generation job embeds detected furniture, the catalog import embeds product pictures.
resource "google_project_iam_custom_role" "embedding_predictor" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_embedding_predictor"
  title       = "Zipkku embedding predictions"
  description = "Online predictions of Vertex AI models (multimodalembedding), nothing else."
  permissions = ["aiplatform.endpoints.predict"]
}

resource "google_project_iam_member" "embedding_predictor" {
  for_each = toset(["worker", "importer"])

  project = var.project_id
  role    = google_project_iam_custom_role.embedding_predictor.id
  member  = local.runtime_member[each.key]
}

# --- the deployer -------------------------------------------------------------------------------------------
# Cloud Build's deploying identity. It holds no IAM admin role anywhere: no project IAM, no custom roles, no
# service-account admin. What it needs:
#   actAs on each runtime account    deploy functions and jobs as them, put them on the queue, schedule, triggers
#   Zipkku's buckets and secrets     custom roles with only the bucket/secret permissions terraform uses, with an
#                                    IAM condition on the resource name (creating a bucket or secret is a project-
#                                    level permission, so the condition lets the project itself through)
#   the state bucket                 objects only; the sources bucket: objects only (the upload step)
#   the pipeline's three secrets     read (Atlas API key pair, Qdrant Cloud management key)
#   the products' admin roles        project-level because terraform creates those resources (functions, jobs,
#                                    queue, topics, schedule, network, load balancer, alerts), and these roles
#                                    carry no right to change project IAM. compute.securityAdmin: networkAdmin
#                                    excludes firewall rules, SSL certificates and Cloud Armor policies, which
#                                    network.tf and lb.tf create.
resource "google_service_account" "deployer" {
  account_id   = "${var.name_prefix}-deployer"
  display_name = "Zipkku Cloud Build deployer"
}

locals {
  deployer = "serviceAccount:${google_service_account.deployer.email}"

  sources_bucket = "projects/_/buckets/${var.project_id}-${var.name_prefix}-sources"

  # Zipkku's buckets are <project>-<prefix>-<role> (terraform/storage.tf), its secrets <prefix>-<name>.
  zipkku_resources = join(" || ", [
    "resource.name.startsWith(\"projects/_/buckets/${var.project_id}-${var.name_prefix}-\")",
    "resource.name.startsWith(\"projects/${data.google_project.this.number}/secrets/${var.name_prefix}-\")",
  ])
}

resource "google_project_iam_member" "deployer" {
  for_each = toset([
    "roles/artifactregistry.admin",
    "roles/cloudfunctions.admin",
    "roles/cloudscheduler.admin",
    "roles/cloudtasks.admin",
    "roles/compute.loadBalancerAdmin",
    "roles/compute.networkAdmin",
    "roles/compute.securityAdmin",
    "roles/eventarc.admin",
    "roles/logging.configWriter",
    "roles/logging.logWriter",
    "roles/monitoring.editor",
    "roles/pubsub.admin",
    "roles/run.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/vpcaccess.admin",
  ])

  project = var.project_id
  role    = each.value
  member  = local.deployer
}

resource "google_project_iam_custom_role" "deployer_data" {
  role_id     = "${replace(var.name_prefix, "-", "_")}_deployer_data"
  title       = "Zipkku deployer: buckets and secrets"
  description = "What terraform/ does with Zipkku's buckets and secrets: no object access, no HMAC keys, nothing outside them."
  permissions = [
    "storage.buckets.create", "storage.buckets.delete", "storage.buckets.get", "storage.buckets.getIamPolicy",
    "storage.buckets.list", "storage.buckets.setIamPolicy", "storage.buckets.update",
    "secretmanager.secrets.create", "secretmanager.secrets.delete", "secretmanager.secrets.get",
    "secretmanager.secrets.getIamPolicy", "secretmanager.secrets.list", "secretmanager.secrets.setIamPolicy",
    "secretmanager.secrets.update", "secretmanager.versions.add", "secretmanager.versions.destroy",
    "secretmanager.versions.disable", "secretmanager.versions.enable", "secretmanager.versions.get",
    "secretmanager.versions.list",
    # the provider reads a version back through :access; whoever deploys code running as the function
    # accounts can read their secrets anyway
    "secretmanager.versions.access",
  ]
}

resource "google_project_iam_member" "deployer_data" {
  project = var.project_id
  role    = google_project_iam_custom_role.deployer_data.id
  member  = local.deployer

  condition {
    title       = "zipkku-buckets-and-secrets"
    description = "Zipkku's buckets and secrets, and the project itself (where buckets and secrets are created)."
    expression  = "resource.type == \"cloudresourcemanager.googleapis.com/Project\" || ${local.zipkku_resources}"
  }
}

# Objects: only the sources bucket (the pipeline uploads the function archives there); it is created by the
# main configuration, hence a condition rather than a bucket binding. No access to people's photos.
resource "google_project_iam_member" "deployer_sources" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = local.deployer

  condition {
    title       = "zipkku-sources-bucket"
    description = "Objects in the function sources bucket only."
    expression  = "resource.name == \"${local.sources_bucket}\" || resource.name.startsWith(\"${local.sources_bucket}/\")"
  }
}

resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = google_service_account.runtime

  service_account_id = each.value.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.deployer
}

resource "google_storage_bucket_iam_member" "deployer_state" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectAdmin"
  member = local.deployer
}

# The secrets only the pipeline reads (cloudbuild.yaml availableSecrets); the operator adds their versions.
resource "google_secret_manager_secret" "pipeline" {
  for_each = toset(["atlas-public-key", "atlas-private-key", "qdrant-management-key"])

  secret_id = "${var.name_prefix}-${each.key}"
  labels    = { app = "zipkku" }

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret_iam_member" "deployer_reads_pipeline_secrets" {
  for_each = google_secret_manager_secret.pipeline

  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.deployer
}

output "state_bucket" {
  value = google_storage_bucket.state.name
}

output "deployer_service_account" {
  value = google_service_account.deployer.email
}
