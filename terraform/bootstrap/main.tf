# One-time bootstrap, run by a project administrator with local state (it holds no secrets):
#   cd terraform/bootstrap && terraform init && terraform apply -var project_id=<project>
# It creates the bucket that holds the main configuration's remote state and the identity Cloud Build deploys
# with. Then: cd .. && terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=zipkku/prod"
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

provider "google" {
  project = var.project_id
  region  = var.region
}

resource "google_project_service" "this" {
  for_each = toset([
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
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

# Cloud Build's deploying identity: the admin roles of exactly the products terraform/ manages (no owner/editor).
# compute.securityAdmin: compute.networkAdmin excludes firewall rules (and SSL certificates), and network.tf
# creates the egress network's deny-ingress google_compute_firewall; no narrower predefined role grants
# compute.firewalls.* on a project.
resource "google_service_account" "deployer" {
  account_id   = "zipkku-deployer"
  display_name = "Zipkku Cloud Build deployer"
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
    "roles/iam.roleAdmin",
    "roles/logging.configWriter",
    "roles/logging.logWriter",
    "roles/monitoring.editor",
    "roles/pubsub.admin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/run.admin",
    "roles/secretmanager.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
    "roles/vpcaccess.admin",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

# Creating the runtime service accounts and deploying functions and jobs as them (actAs).
resource "google_project_iam_member" "deployer_service_accounts" {
  for_each = toset(["roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser"])
  #checkov:skip=CKV_GCP_41:the deployer deploys functions and jobs as the runtime service accounts it creates; only Cloud Build uses this identity
  #checkov:skip=CKV_GCP_49:managing the runtime service accounts is the deployer's job; only Cloud Build uses this identity

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

output "state_bucket" {
  value = google_storage_bucket.state.name
}

output "deployer_service_account" {
  value = google_service_account.deployer.email
}
