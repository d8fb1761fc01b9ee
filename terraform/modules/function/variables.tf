variable "name" {
  description = "Folder name under functions/ and entry point; deployed with hyphens."
  type        = string
}

variable "project_id" {
  type = string
}

variable "region" {
  type = string
}

variable "source_bucket" {
  description = "Bucket holding the source archives written by scripts/package.py."
  type        = string
}

variable "source_object" {
  description = "Object name of this function's source archive."
  type        = string
}

variable "runtime" {
  type    = string
  default = "python311"
}

variable "trigger" {
  description = "http | storage (finalize on `bucket`) | pubsub (`topic` id)."
  type = object({
    type   = string
    bucket = optional(string)
    topic  = optional(string)
  })

  validation {
    condition     = contains(["http", "storage", "pubsub"], var.trigger.type)
    error_message = "trigger.type must be http, storage or pubsub."
  }
}

variable "public" {
  description = "Invokable by allUsers (the function authenticates callers itself)."
  type        = bool
  default     = false
}

variable "behind_load_balancer" {
  description = "HTTP only: accept requests from the external load balancer (and internal traffic) only."
  type        = bool
  default     = false
}

variable "memory" {
  type    = string
  default = "512Mi"
}

variable "cpu" {
  description = "vCPUs; null lets Cloud Run derive it from the memory."
  type        = string
  default     = null
}

variable "timeout_seconds" {
  type    = number
  default = 60
}

variable "min_instances" {
  type    = number
  default = 0
}

variable "max_instances" {
  type    = number
  default = 20
}

variable "concurrency" {
  type    = number
  default = 1
}

variable "env" {
  description = "Plain environment variables."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variable name => Secret Manager secret id (latest version)."
  type        = map(string)
  default     = {}
}

variable "service_account_email" {
  description = "Runtime identity of the function."
  type        = string
}

variable "build_service_account" {
  description = "Service account (projects/P/serviceAccounts/EMAIL) that builds the function image."
  type        = string
}

variable "trigger_service_account_email" {
  description = "Identity Eventarc / the Pub/Sub push subscription use to invoke event functions."
  type        = string
}

variable "dead_letter_topic" {
  description = "Topic id that receives messages a pubsub-triggered function failed to take."
  type        = string
  default     = null
}

variable "max_delivery_attempts" {
  type    = number
  default = 10
}

variable "pubsub_service_agent" {
  description = "Email of the project's Pub/Sub service agent (it moves messages to the dead-letter topic)."
  type        = string
  default     = null
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector all egress goes through (Cloud NAT's fixed address), or null."
  type        = string
  default     = null
}
