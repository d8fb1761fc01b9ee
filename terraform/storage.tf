# Four buckets, all with uniform bucket-level access and public access prevention enforced: clients only
# ever see short-lived V4 signed URLs.
#   uploads  photos people upload: browser PUTs to signed URLs (CORS); raw/ originals are normalized by
#            on_upload_finalized and then expire
#   images   normalized photos, thumbnails and generated interiors (user data)
#   catalog  product catalog files an operator drops in catalog/ (versioned: a bad upload can be rolled back)
#   sources  function source archives from scripts/package.py (versioned, old builds expire)
# Every bucket is versioned; noncurrent_days is how long a replaced or deleted version is kept; expire lists
# prefixes whose live objects are deleted after some days.
locals {
  buckets = {
    # raw photos carry GPS: keep no old copy past a day; raw/ originals are only needed until
    # on_upload_finalized has normalized them
    uploads = { noncurrent_days = 1, expire = [{ prefix = "raw/", days = 2 }] }
    # people's photos and designs: what they delete (a design, their account) must be gone within a day,
    # so deleted versions are not kept longer; nothing here is ever overwritten, so there is nothing to undo
    images  = { noncurrent_days = 1, expire = [] }
    catalog = { noncurrent_days = 30, expire = [] }
    # old function builds: the current deployment references its own sources/<version>/ objects
    sources = { noncurrent_days = 30, expire = [{ prefix = "sources/", days = 90 }] }
  }
}

resource "google_storage_bucket" "this" {
  for_each = local.buckets

  name                        = "${var.project_id}-${var.name_prefix}-${each.key}"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = { app = "zipkku", content = each.key }

  versioning {
    enabled = true
  }

  # Object access is recorded by Data Access audit logs (Cloud Logging), not by legacy usage-log buckets.
  #checkov:skip=CKV_GCP_62:access is audited through Cloud Audit Logs; legacy usage logs would need a bucket of their own

  # Replaced or deleted versions are kept for a while (undo), then removed.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = each.value.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  # Unfinished resumable/multipart uploads never linger.
  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  # Live objects under the bucket's expire prefixes (local.buckets) are deleted after their days.
  dynamic "lifecycle_rule" {
    for_each = each.value.expire
    content {
      condition {
        age            = lifecycle_rule.value.days
        matches_prefix = [lifecycle_rule.value.prefix]
      }
      action {
        type = "Delete"
      }
    }
  }

  # The browser PUTs photos to signed URLs on uploads, and fetches images and .glb models (the AR viewer uses
  # fetch, which needs CORS) through signed GET URLs on images and catalog.
  dynamic "cors" {
    for_each = contains(["uploads", "images", "catalog"], each.key) ? [1] : []
    content {
      origin          = var.cors_origins
      method          = each.key == "uploads" ? ["PUT", "GET", "HEAD"] : ["GET", "HEAD"]
      response_header = ["Content-Type", "Content-Length", "x-goog-content-length-range", "x-goog-if-generation-match", "ETag"]
      max_age_seconds = 3600
    }
  }

  depends_on = [google_project_service.this]
}
