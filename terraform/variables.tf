# --- project -------------------------------------------------------------------------------------------------
variable "project_id" {
  description = "Google Cloud project that hosts Zipkku."
  type        = string
}

variable "region" {
  description = "Region for functions, jobs, the queue and the buckets (GCP_REGION)."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of bucket names (globally unique) and other named resources."
  type        = string
  default     = "zipkku"
}

variable "deletion_protection" {
  description = "Protect jobs and data stores from `terraform destroy`; turn off only for throw-away environments."
  type        = bool
  default     = true
}

# --- what to deploy ------------------------------------------------------------------------------------------
variable "source_version" {
  description = "Version of the function source archives in the sources bucket (the commit SHA in Cloud Build): each function is deployed from sources/<version>/<name>.zip, as written by scripts/package.py."
  type        = string
}

variable "image_tag" {
  description = "Tag of the job images in Artifact Registry (the commit SHA in Cloud Build)."
  type        = string
}

variable "cors_origins" {
  description = "Frontend origins allowed by the functions (CORS_ORIGINS) and by the buckets' CORS (browser PUT to signed upload URLs, fetch of signed image and model URLs)."
  type        = list(string)
}

variable "mongodb_db" {
  description = "Database name inside the Atlas cluster (MONGODB_DB)."
  type        = string
  default     = "zipkku"
}

# --- AI providers --------------------------------------------------------------------------------------------
variable "replicate_model" {
  description = "Replicate model used for interior generation (REPLICATE_MODEL)."
  type        = string
  default     = "adirik/interior-design"
}

variable "replicate_version" {
  description = "Pinned Replicate model version (REPLICATE_VERSION); empty uses the model's latest."
  type        = string
  default     = ""
}

variable "detector" {
  description = "Furniture detection (DETECTOR): vision (Cloud Vision object localization, nothing to run) or http (a detector service of your own at detector_url)."
  type        = string
  default     = "vision"

  validation {
    condition     = contains(["vision", "http"], var.detector)
    error_message = "detector is vision or http."
  }
}

variable "embedder" {
  description = "Image embeddings of the catalog and of detected furniture (EMBEDDER): vertex (Vertex AI multimodalembedding) or http (the detector service's /embed)."
  type        = string
  default     = "vertex"

  validation {
    condition     = contains(["vertex", "http"], var.embedder)
    error_message = "embedder is vertex or http."
  }
}

variable "vertex_embedding_dim" {
  description = "VERTEX_EMBEDDING_DIM: size of Vertex AI's multimodal embeddings (128, 256, 512 or 1408; part of the collection name)."
  type        = number
  default     = 512

  validation {
    condition     = contains([128, 256, 512, 1408], var.vertex_embedding_dim)
    error_message = "vertex_embedding_dim is 128, 256, 512 or 1408."
  }
}

variable "detector_url" {
  description = "Only with detector or embedder = http: base URL of your detector / embedder service (DETECTOR_URL)."
  type        = string
  default     = ""
}

# --- secrets -------------------------------------------------------------------------------------------------
variable "jwt_secret_version" {
  description = "Bump to generate and store a new JWT signing key (write-only: the key never enters the state). Signs out every user."
  type        = number
  default     = 1
}

variable "mongodb_password_version" {
  description = "Bump to rotate the Atlas database user's password and the MONGODB_URI secret together (write-only)."
  type        = number
  default     = 1
}

# --- MongoDB Atlas -------------------------------------------------------------------------------------------
variable "atlas_org_id" {
  description = "MongoDB Atlas organization that owns the project."
  type        = string
}

variable "atlas_cluster_size" {
  description = "FLEX for a Flex cluster, or a dedicated tier such as M10 / M20 / M30."
  type        = string
  default     = "FLEX"

  validation {
    condition     = can(regex("^(FLEX|M[0-9]+)$", var.atlas_cluster_size))
    error_message = "Use FLEX or a dedicated tier like M10."
  }
}

variable "atlas_region" {
  description = "Atlas region name of the cluster on GCP (e.g. WESTERN_EUROPE for europe-west1)."
  type        = string
  default     = "WESTERN_EUROPE"
}

variable "atlas_ip_access_list" {
  description = "Extra CIDR blocks allowed to reach the cluster (e.g. an operator's network); the functions' and jobs' Cloud NAT address is always allowed."
  type        = list(string)
  default     = []
}

# --- Qdrant Cloud --------------------------------------------------------------------------------------------
variable "qdrant_account_id" {
  description = "Qdrant Cloud account id (QDRANT_CLOUD_API_KEY comes from the environment)."
  type        = string
}

variable "qdrant_region" {
  description = "Qdrant Cloud region on GCP."
  type        = string
  default     = "europe-west3"
}

variable "qdrant_package" {
  description = "Resources of one Qdrant node; the cheapest paid booking package with exactly this cpu/ram is used."
  type = object({
    cpu = string
    ram = string
  })
  default = {
    cpu = "500m"
    ram = "2Gi"
  }
}

variable "qdrant_collection_prefix" {
  description = "QDRANT_COLLECTION_PREFIX: collections are <prefix>__<embedder name>__<dim>; the read-only key is scoped to that one."
  type        = string
  default     = "products"
}

variable "embedder_name" {
  description = "Only with embedder = http: EMBEDDER_NAME of the detector service's embeddings (part of the collection name)."
  type        = string
  default     = "detector-clip"
}

variable "embedder_dim" {
  description = "Only with embedder = http: EMBEDDER_DIM, length of the detector service's embeddings (part of the collection name)."
  type        = number
  default     = 512
}

variable "qdrant_nodes" {
  description = "Number of Qdrant nodes."
  type        = number
  default     = 1
}

# --- queue ---------------------------------------------------------------------------------------------------
variable "generation_rate_per_second" {
  description = "How many generation jobs the queue may start per second."
  type        = number
  default     = 1
}

variable "generation_sweep_schedule" {
  description = "Cron (UTC) of the generation sweep: a run of generate-interior that picks up interiors whose runs crashed after their task retries were used up."
  type        = string
  default     = "*/15 * * * *"
}

variable "generation_max_concurrent" {
  description = "How many generation job runs may be in flight at once."
  type        = number
  default     = 5
}

# --- monitoring ----------------------------------------------------------------------------------------------
variable "alert_emails" {
  description = "Who gets the alerts (one email notification channel each)."
  type        = list(string)
  default     = []
}

variable "generation_failure_ratio_threshold" {
  description = "Alert when more than this share of generations fails over 15 minutes."
  type        = number
  default     = 0.2
}

variable "http_5xx_threshold" {
  description = "Alert when one function answers more 5xx than this within 5 minutes."
  type        = number
  default     = 5
}

# --- optional single-origin load balancer --------------------------------------------------------------------
variable "enable_load_balancer" {
  description = "Serve every HTTP function under https://<domain>/api/<name> through one HTTPS load balancer."
  type        = bool
  default     = false
}

variable "armor_signup_per_minute" {
  description = "Cloud Armor (load balancer on): sign-ups per client address per minute; 3x that in 10 minutes bans the address for an hour."
  type        = number
  default     = 5
}

variable "armor_login_per_minute" {
  description = "Cloud Armor (load balancer on): login requests per client address per minute, then 429."
  type        = number
  default     = 20
}

variable "armor_requests_per_minute" {
  description = "Cloud Armor (load balancer on): requests per client address per minute to any other path, then 429."
  type        = number
  default     = 600
}

variable "domain" {
  description = "Domain of the load balancer (its DNS A record must point at the output lb_ip_address)."
  type        = string
  default     = ""
}

# --- egress ----------------------------------------------------------------------------------------------------
variable "egress_connector_cidr" {
  description = "An unused /28 in the egress network for the Serverless VPC Access connector."
  type        = string
  default     = "10.8.0.0/28"
}

variable "egress_connector_max_instances" {
  description = "Upper bound of the VPC Access connector's instances (throughput to the database)."
  type        = number
  default     = 4
}
