# Providers are pinned exactly; `terraform init` writes .terraform.lock.hcl, which is committed after the
# first init so every run (laptop or Cloud Build) uses the same provider builds.
# Terraform >= 1.11 is needed for write-only arguments (secrets that never reach the state).
terraform {
  required_version = ">= 1.11.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "7.17.0"
    }
    mongodbatlas = {
      source  = "mongodb/mongodbatlas"
      version = "2.17.0"
    }
    qdrant-cloud = {
      source  = "qdrant/qdrant-cloud"
      version = "1.30.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "3.7.2"
    }
    time = {
      source  = "hashicorp/time"
      version = "0.13.1"
    }
  }

  # Remote state in the bucket made by terraform/bootstrap (see README "Deploy"). The bucket is passed at
  # init time so one configuration serves every environment:
  #   terraform init -backend-config="bucket=<project>-tfstate" -backend-config="prefix=zipkku/prod"
  backend "gcs" {}
}
