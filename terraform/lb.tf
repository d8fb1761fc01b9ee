# Optional single origin (var.enable_load_balancer): https://<domain>/api/<name> for every HTTP function,
# through serverless NEGs, as the old Traefik front did. With it on, the HTTP functions accept traffic only from
# the load balancer (ingress internal-and-cloud-load-balancing, modules/function), so the Cloud Armor policy
# below cannot be bypassed through their own run.app / cloudfunctions.net URLs.
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

  security_policy = google_compute_security_policy.api[0].id

  backend {
    group = google_compute_region_network_endpoint_group.function[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

# Cloud Armor in front of every function, keyed on the client address the load balancer sees (a client cannot
# choose it). Sign-up gets a ban (each new account brings its own quotas), login a throttle (each attempt costs an
# argon2id hash); everything else a generous per-address ceiling. Over the limit: 429 from the edge, before any
# function instance is started. The functions' own per-address and per-account limits stay (lib/throttle.py).
resource "google_compute_security_policy" "api" {
  count = var.enable_load_balancer ? 1 : 0

  name        = "${var.name_prefix}-api"
  description = "Zipkku API: per-address rate limits for sign-up, login and the whole API."

  rule {
    priority    = 1000
    description = "Sign-up: ban an address that creates accounts faster than the limit."
    action      = "rate_based_ban"
    match {
      expr {
        expression = "request.path.startsWith('/api/auth-signup')"
      }
    }
    rate_limit_options {
      enforce_on_key = "IP"
      conform_action = "allow"
      exceed_action  = "deny(429)"
      rate_limit_threshold {
        count        = var.armor_signup_per_minute
        interval_sec = 60
      }
      ban_threshold {
        count        = var.armor_signup_per_minute * 3
        interval_sec = 600
      }
      ban_duration_sec = 3600
    }
  }

  rule {
    priority    = 1100
    description = "Login: throttle password attempts per address."
    action      = "throttle"
    match {
      expr {
        expression = "request.path.startsWith('/api/auth-login')"
      }
    }
    rate_limit_options {
      enforce_on_key = "IP"
      conform_action = "allow"
      exceed_action  = "deny(429)"
      rate_limit_threshold {
        count        = var.armor_login_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    priority    = 1200
    description = "Log4j lookups (CVE-2021-44228): no Java here, refused anyway at no cost."
    action      = "deny(403)"
    match {
      expr {
        expression = "evaluatePreconfiguredExpr('cve-canary')"
      }
    }
  }

  rule {
    priority    = 2000
    description = "Every other path: a per-address ceiling well above what one person's browser sends."
    action      = "throttle"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      enforce_on_key = "IP"
      conform_action = "allow"
      exceed_action  = "deny(429)"
      rate_limit_threshold {
        count        = var.armor_requests_per_minute
        interval_sec = 60
      }
    }
  }

  rule {
    priority    = 2147483647
    description = "Default: allow."
    action      = "allow"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
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
