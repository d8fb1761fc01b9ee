# --- MongoDB Atlas: project, cluster (Flex by default), the application's user, who may connect ---------------
locals {
  atlas_flex   = var.atlas_cluster_size == "FLEX"
  cluster_name = "${var.name_prefix}-main"
  mongodb_srv = local.atlas_flex ? (
    one(mongodbatlas_flex_cluster.this[*].connection_strings.standard_srv)
  ) : one(mongodbatlas_advanced_cluster.this[*].connection_strings.standard_srv)
  # The name read back from whichever cluster exists: what refers to the cluster waits until it is there.
  created_cluster_name = local.atlas_flex ? (
    one(mongodbatlas_flex_cluster.this[*].name)
  ) : one(mongodbatlas_advanced_cluster.this[*].name)
}

resource "mongodbatlas_project" "this" {
  name   = var.name_prefix
  org_id = var.atlas_org_id
}

resource "mongodbatlas_flex_cluster" "this" {
  count = local.atlas_flex ? 1 : 0

  project_id = mongodbatlas_project.this.id
  name       = local.cluster_name
  provider_settings = {
    backing_provider_name = "GCP"
    region_name           = var.atlas_region
  }
  termination_protection_enabled = var.deletion_protection
}

resource "mongodbatlas_advanced_cluster" "this" {
  count = local.atlas_flex ? 0 : 1

  project_id                     = mongodbatlas_project.this.id
  name                           = local.cluster_name
  cluster_type                   = "REPLICASET"
  backup_enabled                 = true
  termination_protection_enabled = var.deletion_protection

  replication_specs = [{
    region_configs = [{
      provider_name = "GCP"
      region_name   = var.atlas_region
      priority      = 7
      electable_specs = {
        instance_size = var.atlas_cluster_size
        node_count    = 3
      }
    }]
  }]
}

# The password is generated per run and written only (never stored in the state); it reaches the user and the
# MONGODB_URI secret in the same apply whenever var.mongodb_password_version changes.
resource "mongodbatlas_database_user" "app" {
  project_id          = mongodbatlas_project.this.id
  username            = "${var.name_prefix}-app"
  auth_database_name  = "admin"
  password_wo         = ephemeral.random_password.mongodb.result
  password_wo_version = var.mongodb_password_version

  roles {
    role_name     = "readWrite"
    database_name = var.mongodb_db
  }

  scopes {
    name = local.created_cluster_name
    type = "CLUSTER"
  }
}

resource "mongodbatlas_project_ip_access_list" "this" {
  for_each = toset(var.atlas_ip_access_list)

  project_id = mongodbatlas_project.this.id
  cidr_block = each.value
  comment    = "Zipkku: allowed by the operator"
}

# The functions' and jobs' one egress address (network.tf), so the cluster needs no wider opening.
resource "mongodbatlas_project_ip_access_list" "egress" {
  project_id = mongodbatlas_project.this.id
  ip_address = google_compute_address.egress.address
  comment    = "Zipkku functions and jobs (Cloud NAT)"
}

# --- Qdrant Cloud: one cluster and the application's database API keys ----------------------------------------
data "qdrant-cloud_booking_packages" "gcp" {
  cloud_provider = "gcp"
  cloud_region   = var.qdrant_region
}

# The paid package of exactly this cpu/ram. Several can share a size (tiers, zone options): the cheapest is
# taken, then the lowest id, so the choice never depends on the order the API lists them in. The cluster's
# precondition says so when the region has none.
locals {
  qdrant_packages = {
    for package in data.qdrant-cloud_booking_packages.gcp.packages :
    format("%012d/%s", package.unit_int_price_per_hour, package.id) => package
    if package.type == "paid" && package.resource_configuration[0].cpu == var.qdrant_package.cpu && package.resource_configuration[0].ram == var.qdrant_package.ram
  }
  qdrant_package = try(local.qdrant_packages[sort(keys(local.qdrant_packages))[0]], null)
}

resource "qdrant-cloud_accounts_cluster" "this" {
  name           = "${var.name_prefix}-vectors"
  cloud_provider = data.qdrant-cloud_booking_packages.gcp.cloud_provider
  cloud_region   = data.qdrant-cloud_booking_packages.gcp.cloud_region

  configuration {
    number_of_nodes = var.qdrant_nodes
    node_configuration {
      package_id = try(local.qdrant_package.id, null)
    }
  }

  lifecycle {
    precondition {
      condition     = local.qdrant_package != null
      error_message = "Qdrant Cloud lists no paid package with cpu ${var.qdrant_package.cpu} and ram ${var.qdrant_package.ram} in ${var.qdrant_region}: set var.qdrant_package to a size the booking packages offer."
    }
  }
}

# The one collection the application uses, named as lib/vectors.py collection_name() names it
# ("<prefix>__<embedder name>__<dim>"); common_env passes the same three settings to the code.
locals {
  qdrant_collection = "${var.qdrant_collection_prefix}__${replace(local.embedder_identity.name, "/[^A-Za-z0-9_-]/", "-")}__${local.embedder_identity.dim}"
}

# Two database API keys, the least each user needs:
#   read    read-only on the products collection: products_similar (a public function) and the generation job
#   manage  the catalog import creates the collection and its payload indexes, which only a global manage key may
resource "qdrant-cloud_accounts_database_api_key_v2" "read" {
  cluster_id = qdrant-cloud_accounts_cluster.this.id
  name       = "${var.name_prefix}-read"

  collection_access_rules {
    collection_name = local.qdrant_collection
    access_type     = "COLLECTION_ACCESS_RULE_ACCESS_TYPE_READ_ONLY"
  }
}

resource "qdrant-cloud_accounts_database_api_key_v2" "manage" {
  cluster_id = qdrant-cloud_accounts_cluster.this.id
  name       = "${var.name_prefix}-import"

  global_access_rule {
    access_type = "GLOBAL_ACCESS_RULE_ACCESS_TYPE_MANAGE"
  }
}
