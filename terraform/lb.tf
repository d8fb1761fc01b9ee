# Optional single origin (var.enable_load_balancer): https://<domain>/api/<name> for every HTTP function,
# through serverless NEGs, as the old Traefik front did. The functions keep their own URLs as well.
locals {
  lb_functions = var.enable_load_balancer ? {
    for name, spec in local.function_specs : replace(name, "_", "-") => name if spec.trigger.type == "http"
  } : {}
}

resource "google_compute_region_network_endpoint_group" "function" {
  for_each = local.lb_functions

  name                  = "${var.name_prefix}-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = module.function[each.value].name
  }
}

resource "google_compute_backend_service" "function" {
  for_each = local.lb_functions

  name                  = "${var.name_prefix}-${each.key}"
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL_MANAGED"

  backend {
    group = google_compute_region_network_endpoint_group.function[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "api" {
  count = var.enable_load_balancer ? 1 : 0

  name = "${var.name_prefix}-api"
  # Anything that is not /api/<function> finds nothing.
  default_url_redirect {
    path_redirect          = "/api/openapi"
    redirect_response_code = "FOUND"
    strip_query            = true
  }

  host_rule {
    hosts        = [var.domain]
    path_matcher = "functions"
  }

  path_matcher {
    name = "functions"
    default_url_redirect {
      path_redirect          = "/api/openapi"
      redirect_response_code = "FOUND"
      strip_query            = true
    }

    dynamic "path_rule" {
      for_each = local.lb_functions
      content {
        paths   = ["/api/${path_rule.key}", "/api/${path_rule.key}/*"]
        service = google_compute_backend_service.function[path_rule.key].id
        route_action {
          url_rewrite {
            path_prefix_rewrite = "/"
          }
        }
      }
    }
  }
}

resource "google_compute_managed_ssl_certificate" "api" {
  count = var.enable_load_balancer ? 1 : 0

  name = "${var.name_prefix}-api"
  managed {
    domains = [var.domain]
  }
}

resource "google_compute_ssl_policy" "api" {
  count = var.enable_load_balancer ? 1 : 0

  name            = "${var.name_prefix}-api"
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "api" {
  count = var.enable_load_balancer ? 1 : 0

  name             = "${var.name_prefix}-api"
  url_map          = google_compute_url_map.api[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.api[0].id]
  ssl_policy       = google_compute_ssl_policy.api[0].id
}

resource "google_compute_global_address" "api" {
  count = var.enable_load_balancer ? 1 : 0

  name = "${var.name_prefix}-api"
}

resource "google_compute_global_forwarding_rule" "api" {
  count = var.enable_load_balancer ? 1 : 0

  name                  = "${var.name_prefix}-api"
  target                = google_compute_target_https_proxy.api[0].id
  ip_address            = google_compute_global_address.api[0].address
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
