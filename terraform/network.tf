# One fixed egress address for the database. MongoDB Atlas admits connections only from listed addresses, so
# every function and job sends its outbound traffic through a Serverless VPC Access connector and Cloud NAT
# with ONE reserved static address, which data_stores.tf adds to the Atlas IP access list. (Qdrant Cloud, the
# Google APIs and Replicate are reached over TLS with credentials and need no address list.)
resource "google_compute_network" "egress" {
  name                    = "${var.name_prefix}-egress"
  auto_create_subnetworks = false
  description             = "Egress of Zipkku functions and jobs through Cloud NAT."

  depends_on = [google_project_service.this]
}

# The network only carries outbound traffic: nothing may come in. (The rules Serverless VPC Access creates for
# its connector's health checks and serverless traffic have priority 100, ahead of this one.)
resource "google_compute_firewall" "deny_ingress" {
  name        = "${var.name_prefix}-egress-deny-ingress"
  network     = google_compute_network.egress.name
  direction   = "INGRESS"
  priority    = 1000
  description = "No inbound traffic to the egress network."

  source_ranges = ["0.0.0.0/0"]

  deny {
    protocol = "all"
  }

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

resource "google_vpc_access_connector" "egress" {
  name          = "${var.name_prefix}-egress"
  region        = var.region
  network       = google_compute_network.egress.name
  ip_cidr_range = var.egress_connector_cidr
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = var.egress_connector_max_instances
}

resource "google_compute_router" "egress" {
  name    = "${var.name_prefix}-egress"
  region  = var.region
  network = google_compute_network.egress.id
}

resource "google_compute_address" "egress" {
  name         = "${var.name_prefix}-egress"
  region       = var.region
  address_type = "EXTERNAL"
  description  = "The one address Zipkku's functions and jobs reach the internet (and MongoDB Atlas) from."
}

resource "google_compute_router_nat" "egress" {
  name                               = "${var.name_prefix}-egress"
  router                             = google_compute_router.egress.name
  region                             = var.region
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.egress.self_link]
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}
