# The managed AI providers (variables detector, embedder). The jobs call them as their own identities: the
# generation job (worker) detects furniture with Cloud Vision and embeds what it found, the catalog import
# (importer) embeds product pictures, both with Vertex AI. Their one permission, aiplatform.endpoints.predict,
# is a project-level grant and so lives in terraform/bootstrap (embedding_predictor); Cloud Vision with the image
# inline needs no role, only the API enabled (apis.tf). The HTTP functions call neither API.
locals {
  # A detector service of your own (detector or embedder = http) and so its key (secrets.tf, bootstrap step 6).
  detector_service = var.detector == "http" || var.embedder == "http"

  # The name and size lib/embed.py gives the configured embedder: the vector collection is named after them.
  embedder_identity = var.embedder == "vertex" ? { name = "vertex-multimodalembedding-001", dim = var.vertex_embedding_dim } : { name = var.embedder_name, dim = var.embedder_dim }
}
