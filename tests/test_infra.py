"""terraform/ against the code: one map entry per function/job folder (and vice versa), triggers that match
each function's signature, configuration the code actually reads; and the offline infra checks
(scripts/check_infra.py), each shown able to fail on a broken copy."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest

from lib import discovery
from scripts import check_infra
from scripts.localstack import ROOT

TERRAFORM = ROOT / "terraform"

EXPECTED_FUNCTIONS = {
    "auth_signup", "auth_login", "auth_refresh", "auth_logout", "me", "uploads_create", "uploads_direct",
    "uploads_get", "interiors_generate", "interiors_get", "interiors_list", "interiors_save", "interiors_delete",
    "notifications_read", "styles_list", "products_search", "products_similar", "ar_similar_objects", "openapi", "docs",
    "on_upload_finalized", "on_catalog_uploaded", "on_interior_finished",
}
EXPECTED_JOBS = {"generate_interior", "import_catalog"}


def unquote(value):
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


def terraform_locals() -> dict:
    merged: dict = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("locals", []):
                for name, value in block.items():
                    if name.startswith("__"):  # parser bookkeeping (__is_block__)
                        continue
                    assert name not in merged, f"local.{name} is defined twice"
                    merged[name] = unquote(value)
    return merged


LOCALS = terraform_locals()


def folders(kind: str) -> set[str]:
    return {p.name for p in (ROOT / kind).iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}


def raw_map_keys(local_name: str) -> list[str]:
    """Keys of a top-level map local as written (a duplicate key would be silently merged by the parser)."""
    keys, inside = [], False
    for path in sorted(TERRAFORM.glob("*.tf")):
        for line in path.read_text().splitlines():
            if line.startswith(f"  {local_name} = {{"):
                inside = True
            elif inside and line.startswith("  }"):
                inside = False
            elif inside and line.startswith("    ") and not line.startswith("     ") and "=" in line:
                keys.append(line.split("=", 1)[0].strip())
    return keys


# --- the maps against the folders ------------------------------------------------------------------------

def test_function_map_is_exactly_the_function_folders():
    keys = raw_map_keys("functions")
    assert len(keys) == len(set(keys)), f"duplicate entries: {sorted(k for k in keys if keys.count(k) > 1)}"
    assert set(keys) == set(LOCALS["functions"]) == EXPECTED_FUNCTIONS
    on_disk = set(discovery.function_names())
    assert not on_disk - EXPECTED_FUNCTIONS, f"folders without terraform: {sorted(on_disk - EXPECTED_FUNCTIONS)}"
    assert not EXPECTED_FUNCTIONS - on_disk, f"terraform without folders: {sorted(EXPECTED_FUNCTIONS - on_disk)}"


def test_job_map_is_exactly_the_job_folders():
    keys = raw_map_keys("jobs")
    assert len(keys) == len(set(keys))
    assert set(keys) == set(LOCALS["jobs"]) == EXPECTED_JOBS
    assert folders("jobs") == set(discovery.job_names()) == EXPECTED_JOBS


def function_kind(main_py: Path) -> tuple[str, str]:
    """('http' | 'event', entry point name) from the decorators in main.py, without importing it."""
    tree = ast.parse(main_py.read_text(), filename=str(main_py))
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            name = ast.unparse(target)
            if name in ("http_function", "lib.http.http_function", "http.http_function"):
                found.append(("http", node.name))
            elif name in ("cloud_event_function", "lib.http.cloud_event_function", "http.cloud_event_function"):
                found.append(("event", node.name))
    assert len(found) == 1, f"{main_py}: expected one @http_function or @cloud_event_function, got {found}"
    return found[0]


@pytest.mark.parametrize("name", sorted(EXPECTED_FUNCTIONS))
def test_trigger_matches_the_code(name):
    main_py = ROOT / "functions" / name / "main.py"
    if not main_py.is_file():
        pytest.fail(f"functions/{name}/main.py does not exist (terraform deploys it)")
    kind, entry_point = function_kind(main_py)
    assert entry_point == name, f"entry point must be named after the folder: {entry_point} != {name}"
    spec = LOCALS["functions"][name]
    trigger = spec["trigger"]["type"]
    assert (trigger == "http") == (kind == "http"), f"{name}: terraform says {trigger}, the code is {kind}"
    # Only HTTP functions the frontend calls are public; event functions are invoked by their trigger only.
    assert spec.get("public", False) is (trigger == "http")


def test_event_triggers_point_at_declared_buckets_and_topics():
    triggers = {name: spec["trigger"] for name, spec in LOCALS["functions"].items()}
    assert triggers["on_upload_finalized"] == {"type": "storage", "bucket": "uploads"}
    assert triggers["on_catalog_uploaded"] == {"type": "storage", "bucket": "catalog"}
    assert triggers["on_interior_finished"] == {"type": "pubsub", "topic": "interior_finished"}
    for trigger in triggers.values():
        assert trigger["type"] in ("http", "storage", "pubsub")
        if trigger["type"] == "storage":
            assert trigger["bucket"] in LOCALS["buckets"]
        if trigger["type"] == "pubsub":
            assert trigger["topic"] in LOCALS["topics"]


def test_configuration_names_are_settings_the_code_reads():
    from lib.config import Settings

    fields = {name.upper() for name in Settings.model_fields}
    secrets = {LOCALS["secret_env"].get(key, key.upper()) for key in LOCALS["secrets"]}
    env = set(LOCALS["common_env"]) | {"SIGNING_SERVICE_ACCOUNT"}
    assert not (env | secrets) - fields, f"not read by lib/config.py: {sorted((env | secrets) - fields)}"
    required = {
        "ENVIRONMENT", "GCP_PROJECT", "GCP_REGION", "MONGODB_DB", "CORS_ORIGINS", "UPLOADS_BUCKET", "IMAGES_BUCKET",
        "CATALOG_BUCKET", "QDRANT_URL", "GENERATOR", "REPLICATE_MODEL", "REPLICATE_VERSION", "DETECTOR", "EMBEDDER",
        "DETECTOR_URL", "TASK_QUEUE", "TASKS_QUEUE_NAME", "GENERATE_JOB_NAME",
        "IMPORT_JOB_NAME", "EVENTS", "INTERIOR_FINISHED_TOPIC", "JOB_RUNNER",
    }
    assert required <= set(LOCALS["common_env"])
    assert {"JWT_SECRET", "MONGODB_URI", "QDRANT_API_KEY", "REPLICATE_API_TOKEN"} <= secrets
    # Every function and job gets the database; secrets named are secrets that exist.
    for spec in [*LOCALS["functions"].values(), *LOCALS["jobs"].values()]:
        assert "mongodb_uri" in spec.get("secrets", LOCALS["function_defaults"]["secrets"])
        assert set(spec.get("secrets", [])) <= set(LOCALS["secrets"])


def test_only_functions_that_handle_access_tokens_get_the_jwt_key():
    """The JWT key lets its holder sign in as anyone: the functions that sign or check access tokens get it
    (tokens = true adds it), and no other function, no event handler and no job."""
    import re

    for name, spec in LOCALS["functions"].items():
        code = (ROOT / "functions" / name / "main.py").read_text()
        handles_tokens = "auth=True" in code or re.search(r"accounts\.login\(|auth\.rotate_refresh_token\(", code)
        assert spec.get("tokens", False) == bool(handles_tokens), name
        assert "jwt_secret" not in spec.get("secrets", []), name  # only through tokens = true
    assert "jwt_secret" not in LOCALS["function_defaults"]["secrets"]
    for name, job in LOCALS["jobs"].items():
        assert "jwt_secret" not in job["secrets"], name
    assert 'lookup(spec, "tokens", false) ? ["jwt_secret"]' in (TERRAFORM / "functions.tf").read_text()


def test_expiring_prefixes_are_the_ones_the_code_and_the_pipeline_write():
    """storage.tf promises raw originals (they carry GPS) and old builds expire: the prefixes must be the real ones."""
    from lib.config import Settings

    expire = {name: [rule["prefix"] for rule in bucket["expire"]] for name, bucket in LOCALS["buckets"].items()}
    assert "RAW_UPLOADS_PREFIX" not in LOCALS["common_env"]  # so the functions use the default below
    assert expire["uploads"] == [Settings.model_fields["raw_uploads_prefix"].default]
    assert expire["sources"] == ["sources/"]
    assert "gs://${_SOURCES_BUCKET}/sources/${COMMIT_SHA}/" in (ROOT / "cloudbuild.yaml").read_text()
    assert 'source_object = "sources/${var.source_version}/' in (TERRAFORM / "functions.tf").read_text()
    assert expire["images"] == expire["catalog"] == []  # user data and the catalog never expire


def test_no_basic_roles_anywhere():
    text = "\n".join(p.read_text() for p in TERRAFORM.rglob("*.tf"))
    for role in ("roles/owner", "roles/editor", "roles/viewer"):
        assert f'"{role}"' not in text


# --- the offline checks ----------------------------------------------------------------------------------

def tools_installed() -> bool:
    return (check_infra.INFRA_VENV / "bin" / "checkov").exists() and check_infra.HCL_MODULES.is_dir()


needs_tools = pytest.mark.skipif(
    not tools_installed() and not os.environ.get("CI"),
    reason="infra tools not installed: run `make infra-tools` (CI installs them and never skips)",
)


def run_checks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_infra.py"), *args],
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture
def broken(tmp_path):
    """A copy of terraform/ and cloudbuild.yaml to break."""
    shutil.copytree(TERRAFORM, tmp_path / "terraform", ignore=shutil.ignore_patterns(".terraform"))
    shutil.copy(ROOT / "cloudbuild.yaml", tmp_path / "cloudbuild.yaml")

    def args(*only: str) -> list[str]:
        return ["--terraform", str(tmp_path / "terraform"), "--cloudbuild", str(tmp_path / "cloudbuild.yaml"),
                "--only", ",".join(only)]

    return tmp_path, args


@needs_tools
def test_every_check_passes_on_the_repository():
    result = run_checks()
    assert result.returncode == 0, result.stdout + result.stderr
    for name in check_infra.CHECKS:
        assert f"PASS {name}" in result.stdout


@needs_tools
def test_syntax_error_fails_first_and_stops(broken):
    root, args = broken
    with (root / "terraform" / "storage.tf").open("a") as handle:
        handle.write('\nresource "google_storage_bucket" "half" {\n  name = \n')
    result = run_checks(*args(*check_infra.CHECKS))
    assert result.returncode == 1
    assert "FAIL syntax" in result.stdout and "storage.tf" in result.stdout
    # Never reached: checkov and trivy would pass the file they cannot parse.
    assert "stopping" in result.stdout and "checkov" not in result.stdout and "trivy" not in result.stdout


@needs_tools
def test_misformatted_file_fails(broken):
    root, args = broken
    path = root / "terraform" / "messaging.tf"
    path.write_text(path.read_text().replace('  name     = "generate-interior"', '  name = "generate-interior"'))
    result = run_checks(*args("syntax", "format"))
    assert result.returncode == 1
    assert "PASS syntax" in result.stdout and "FAIL format" in result.stdout and "messaging.tf" in result.stdout


@needs_tools
def test_public_bucket_fails_checkov_and_trivy(broken):
    root, args = broken
    with (root / "terraform" / "storage.tf").open("a") as handle:
        handle.write('\nresource "google_storage_bucket_iam_member" "leak" {\n'
                     '  bucket = google_storage_bucket.this["images"].name\n'
                     '  role   = "roles/storage.objectViewer"\n'
                     '  member = "allUsers"\n}\n')
    result = run_checks(*args("syntax", "format", "checkov", "trivy"))
    assert result.returncode == 1
    assert "PASS syntax" in result.stdout and "PASS format" in result.stdout
    assert "FAIL checkov" in result.stdout and "CKV_GCP_28" in result.stdout
    assert "FAIL trivy" in result.stdout and "HIGH" in result.stdout


@needs_tools
def test_invalid_cloudbuild_fails(broken):
    root, args = broken
    path = root / "cloudbuild.yaml"
    path.write_text(path.read_text().replace("  - id: lint\n", "  - id: lint\n    waitFor: not-a-list\n", 1))
    result = run_checks(*args("cloudbuild"))
    assert result.returncode == 1
    assert "FAIL cloudbuild" in result.stdout


def test_unknown_check_is_refused():
    result = run_checks("--only", "syntax,nonsense")
    assert result.returncode == 2 and "nonsense" in result.stderr


def test_generation_metric_matches_what_the_job_logs():
    """The log-based metric parses lib/generation.py's outcome lines: renaming them would silently blind it."""
    with (TERRAFORM / "monitoring.tf").open() as handle:
        resources = hcl2.load(handle)["resource"]
    metric = next(r["google_logging_metric"]["generation_outcomes"] for r in map(unquote, resources)
                  if "generation_outcomes" in r.get("google_logging_metric", {}))
    line_pattern = re.search(r'jsonPayload\.message=~"([^"]+)"', metric["filter"].replace('\\"', '"')).group(1)
    extract = {k: re.search(r'REGEXP_EXTRACT\(jsonPayload\.message, \\?"(.+?)\\?"\)', v).group(1)
               for k, v in metric["label_extractors"].items()}

    done_format, failed_format = "interior %s done in %.2fs", "interior %s failed: %s"
    source = (ROOT / "lib" / "generation.py").read_text()
    assert f'"{done_format}"' in source and f'"{failed_format}"' in source
    done, failed = done_format % ("6a1b", 12.5), failed_format % ("6a1b", "PROVIDER_FAILED")
    for line in (done, failed):
        assert re.search(line_pattern, line)
    assert re.search(extract["outcome"], done).group(1) == "done"
    assert re.search(extract["outcome"], failed).group(1) == "failed"
    assert re.search(extract["reason"], failed).group(1) == "PROVIDER_FAILED"
    assert not re.search(line_pattern, "interior 6a1b: lease lost (taken over or deleted); stopping")


# --- what `terraform validate` would catch without providers: references that resolve ------------------

def parsed(folder: Path) -> list[dict]:
    documents = []
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            documents.append(unquote(hcl2.load(handle)))
    return documents


def declared(folder: Path) -> dict[str, set]:
    found: dict[str, set] = {"variable": set(), "resource": set(), "data": set(), "module": set()}
    for document in parsed(folder):
        for block in document.get("variable", []):
            found["variable"] |= set(block)
        for kind in ("resource", "data"):
            for block in document.get(kind, []):
                for type_name, bodies in block.items():
                    found[kind] |= {(type_name, name) for name in bodies}
        for block in document.get("module", []):
            found["module"] |= set(block)
    return found


REFERENCE = re.compile(
    r"(?<![\w.-])(data\.)?((?:google|mongodbatlas|qdrant-cloud|random|time)_[a-z0-9_]+)\.([a-z0-9_]+)")


def code_of(folder: Path) -> str:
    """The .tf text without comments (references in prose are not references)."""
    lines = []
    for path in sorted(folder.glob("*.tf")):
        in_removed = False  # `removed { from = ... }` names what is no longer declared, on purpose
        for line in path.read_text().splitlines():
            if line.startswith("removed {"):
                in_removed = True
            elif in_removed:
                in_removed = line != "}"
            elif not line.lstrip().startswith(("#", "//")):
                lines.append(line)
    return "\n".join(lines)


def unresolved(folder: Path, root_locals: dict | None = None) -> list[str]:
    """var./local./module./resource/data references in `folder` that nothing declares."""
    names = declared(folder)
    text = code_of(folder)
    missing = [f"var.{name}" for name in set(re.findall(r"\bvar\.([a-z0-9_]+)", text)) if name not in names["variable"]]
    if root_locals is not None:
        missing += [f"local.{name}" for name in set(re.findall(r"\blocal\.([a-z0-9_]+)", text))
                    if name not in root_locals]
        missing += [f"module.{name}" for name in set(re.findall(r"\bmodule\.([a-z0-9_]+)", text))
                    if name not in names["module"]]
    for data, type_name, name in set(REFERENCE.findall(text)):
        if (type_name, name) not in names["data" if data else "resource"]:
            missing.append(f"{data}{type_name}.{name}")
    return sorted(missing)


@pytest.mark.parametrize("folder", [TERRAFORM, TERRAFORM / "modules" / "function", TERRAFORM / "bootstrap"],
                         ids=["root", "module", "bootstrap"])
def test_references_resolve(folder):
    assert unresolved(folder, LOCALS if folder == TERRAFORM else None) == []


def test_unresolved_references_are_found(tmp_path):
    shutil.copytree(TERRAFORM, tmp_path / "terraform", ignore=shutil.ignore_patterns(".terraform"))
    path = tmp_path / "terraform" / "functions.tf"
    path.write_text(path.read_text()
                    .replace("google_cloud_tasks_queue.generate.name", "google_cloud_tasks_queue.generat.name")
                    .replace("var.replicate_model", "var.replicate_modl")
                    .replace("local.common_env, each", "local.common_envs, each"))
    assert unresolved(tmp_path / "terraform", LOCALS) == [
        "google_cloud_tasks_queue.generat", "local.common_envs", "var.replicate_modl"]


def test_keyed_references_use_declared_keys():
    text = code_of(TERRAFORM)
    for resource, local_name in [("google_storage_bucket", "buckets"), ("google_service_account", "service_accounts"),
                                 ("google_pubsub_topic", "topics"), ("google_secret_manager_secret", "secrets")]:
        used = set(re.findall(rf'{resource}\.this\["([a-z_]+)"\]', text))
        assert used, resource
        assert used <= set(LOCALS[local_name]), f"{resource}: {sorted(used - set(LOCALS[local_name]))}"


def test_module_call_matches_module_variables():
    module_variables = {}
    for document in parsed(TERRAFORM / "modules" / "function"):
        for block in document.get("variable", []):
            module_variables.update(block)
    call = next(block["function"] for document in parsed(TERRAFORM) for block in document.get("module", []))
    arguments = set(call) - {"source", "for_each", "depends_on"}
    assert arguments <= set(module_variables), sorted(arguments - set(module_variables))
    required = {name for name, spec in module_variables.items() if "default" not in spec}
    assert required <= arguments, sorted(required - arguments)


def test_functions_and_jobs_reach_atlas_from_the_one_listed_address():
    """Atlas admits listed addresses only: all egress goes through the connector and Cloud NAT's static address,
    and that address is on the access list."""
    def load(name):
        with (TERRAFORM / name).open() as handle:
            return unquote(hcl2.load(handle))

    module = next(m["function"] for m in load("functions.tf")["module"] if "function" in m)
    assert unquote(module["vpc_connector"]) == "${google_vpc_access_connector.egress.id}"
    job = next(r["google_cloud_run_v2_job"]["this"] for r in load("jobs.tf")["resource"]
               if "google_cloud_run_v2_job" in r)
    access = unquote(job["template"][0]["template"][0]["vpc_access"][0])
    assert access == {"connector": "${google_vpc_access_connector.egress.id}", "egress": "ALL_TRAFFIC"}
    nat = next(r["google_compute_router_nat"]["egress"] for r in load("network.tf")["resource"]
               if "google_compute_router_nat" in r)
    assert unquote(nat["nat_ips"]) == ["${google_compute_address.egress.self_link}"]
    listed = next(r["mongodbatlas_project_ip_access_list"]["egress"] for r in load("data_stores.tf")["resource"]
                  if "egress" in r.get("mongodbatlas_project_ip_access_list", {}))
    assert unquote(listed["ip_address"]) == "${google_compute_address.egress.address}"
    function_main = (TERRAFORM / "modules" / "function" / "main.tf").read_text()
    assert "vpc_connector_egress_settings" in function_main and '"ALL_TRAFFIC"' in function_main


# --- who may start what ----------------------------------------------------------------------------------

def resources(folder: Path = TERRAFORM) -> dict[str, dict[str, dict]]:
    """type -> name -> body of every resource under `folder` (not its modules), quotes removed."""
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("resource", []):
                for type_name, named in unquote(block).items():
                    found.setdefault(type_name, {}).update(named)
    return found


def test_a_public_function_can_only_ask_for_a_generation():
    """The api account may create tasks in the generation queue; the queue sends every task to generate-interior's
    jobs.run with the tasks account's token whatever the task says; the tasks account may run that job only as it
    is (no run.jobs.runWithOverrides), and nobody but the deployer may act as it. So code in a public function
    cannot start the worker with chosen arguments or environment, nor carry the tasks token elsewhere."""
    found = resources()
    queue = found["google_cloud_tasks_queue"]["generate"]
    target = queue["http_target"][0]
    uri = target["uri_override"][0]
    assert uri["uri_override_enforce_mode"] == "ALWAYS" and uri["host"] == "run.googleapis.com"
    assert uri["path_override"][0]["path"].endswith("/jobs/${local.generate_job_name}:run")
    assert LOCALS["generate_job_name"] == '${replace("generate_interior", "_", "-")}'  # as jobs.tf names the job
    assert 'name                = replace(each.key, "_", "-")' in (TERRAFORM / "jobs.tf").read_text()
    # a reference to the job would be a cycle: the job's environment (common_env) names the queue
    assert "google_cloud_run_v2_job" not in str(queue)
    assert LOCALS["common_env"]["GENERATE_JOB_NAME"] == "${local.generate_job_name}"
    assert target["oauth_token"][0]["service_account_email"] == '${data.google_service_account.this["tasks"].email}'

    runners = found["google_cloud_run_v2_job_iam_member"]["runner"]["for_each"]
    assert runners["tasks/generate_interior"]["role"] == "roles/run.invoker"
    assert set(runners) == {"tasks/generate_interior", "events/import_catalog"}
    bootstrap = resources(TERRAFORM / "bootstrap")
    custom = bootstrap["google_project_iam_custom_role"]["job_runner"]
    assert "run.jobs.runWithOverrides" in custom["permissions"]
    assert runners["events/import_catalog"]["role"] == "${local.job_runner_role}"
    assert LOCALS["job_runner_role"].endswith('/roles/${replace(var.name_prefix, "-", "_")}_job_runner')
    assert custom["role_id"] == '${replace(var.name_prefix, "-", "_")}_job_runner'

    # Nobody but the deployer is given actAs / token creation on the tasks account; the functions do not name it.
    for config in (found, bootstrap):
        for name, binding in config.get("google_service_account_iam_member", {}).items():
            if name != "deployer_acts_as":
                assert "tasks" not in str(binding), binding
    assert "TASKS_SERVICE_ACCOUNT" not in LOCALS["common_env"]
    assert found["google_cloud_tasks_queue_iam_member"]["enqueuer"]["role"] == "roles/cloudtasks.enqueuer"

    # The code asks for nothing but a run: no arguments for a generation task (lib/interiors.py).
    source = (ROOT / "lib" / "interiors.py").read_text()
    assert re.search(r"tasks\.enqueue_job\(get_settings\(\)\.generate_job_name, task_id=task_id\(doc\[\"_id\"\]\)\)",
                     source)


def test_the_load_balancer_rate_limits_signup_and_login_and_cannot_be_bypassed():
    """With the load balancer on, Cloud Armor limits sign-ups and logins per client address (429 at the edge) on
    every backend, and the HTTP functions take requests only from the load balancer, not their own URLs."""
    found = resources()
    policy = found["google_compute_security_policy"]["api"]
    assert policy["count"] == "${var.enable_load_balancer ? 1 : 0}"
    rules = {rule["priority"]: rule for rule in policy["rule"]}

    def rule_for(path: str) -> dict:
        matching = [r for r in rules.values()
                    if f"request.path.startsWith('{path}')" in str(r["match"][0].get("expr", ""))]
        assert len(matching) == 1, path
        return matching[0]

    for name, action in [("auth_signup", "rate_based_ban"), ("auth_login", "throttle")]:
        assert name in LOCALS["functions"]
        rule = rule_for(f"/api/{name.replace('_', '-')}")  # lb.tf serves every function at /api/<hyphenated>
        assert rule["action"] == action
        options = rule["rate_limit_options"][0]
        assert options["enforce_on_key"] == "IP" and options["exceed_action"] == "deny(429)"
        assert options["rate_limit_threshold"][0]["count"].startswith("${var.armor_")
    assert rules[2147483647]["action"] == "allow"  # the explicit default rule

    backend = found["google_compute_backend_service"]["function"]
    assert backend["for_each"] == "${local.lb_functions}"
    assert backend["security_policy"] == "${google_compute_security_policy.api[0].id}"

    module = (TERRAFORM / "modules" / "function" / "main.tf").read_text()
    assert ('ingress_settings                 = local.is_http ? (var.behind_load_balancer ? '
            '"ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL") : "ALLOW_INTERNAL_ONLY"') in module
    assert re.search(r"behind_load_balancer\s*=\s*var\.enable_load_balancer", (TERRAFORM / "functions.tf").read_text())


def test_secrets_stay_out_of_the_state_where_the_providers_allow_and_qdrant_keys_are_least_privilege():
    """Every secret version is written write-only (secret_data_wo); the public products_similar function and the
    generation job get a read-only key scoped to the one collection the code uses; only the catalog import gets the
    manage key (it creates the collection)."""
    from lib import vectors
    from lib.config import Settings

    found = resources()
    for name, version in found["google_secret_manager_secret_version"].items():
        assert "secret_data" not in version and "secret_data_wo" in version, name

    keys = found["qdrant-cloud_accounts_database_api_key_v2"]
    read_rules = keys["read"]["collection_access_rules"]
    assert "global_access_rule" not in keys["read"] and len(read_rules) == 1
    assert read_rules[0]["access_type"] == "COLLECTION_ACCESS_RULE_ACCESS_TYPE_READ_ONLY"
    assert read_rules[0]["collection_name"] == "${local.qdrant_collection}"
    assert keys["manage"]["global_access_rule"][0]["access_type"] == "GLOBAL_ACCESS_RULE_ACCESS_TYPE_MANAGE"

    # The scoped collection is the one lib/vectors.py opens, with the settings terraform passes.
    variables = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("variable", []):
                variables.update({unquote(k): unquote(v) for k, v in block.items()})
    defaults = {name: variables[name]["default"]
                for name in ("qdrant_collection_prefix", "embedder_name", "embedder_dim", "vertex_embedding_dim")}
    assert LOCALS["common_env"]["QDRANT_COLLECTION_PREFIX"] == "${var.qdrant_collection_prefix}"
    assert LOCALS["common_env"]["EMBEDDER_NAME"] == "${var.embedder_name}"
    assert LOCALS["common_env"]["EMBEDDER_DIM"] == "${tostring(var.embedder_dim)}"
    expression = LOCALS["qdrant_collection"]
    assert expression == ('${var.qdrant_collection_prefix}__${replace(local.embedder_identity.name, '
                          '"/[^A-Za-z0-9_-]/", "-")}__${local.embedder_identity.dim}')
    # the managed embedder (the default) names its collection as lib/embed.py names it
    from lib.embed import VertexEmbedder

    identity = LOCALS["embedder_identity"]
    assert f'name = "{VertexEmbedder.name}", dim = var.vertex_embedding_dim' in identity
    assert VertexEmbedder.name == "vertex-multimodalembedding-001"
    assert Settings.model_fields["vertex_embedding_dim"].default == defaults["vertex_embedding_dim"]
    assert LOCALS["common_env"]["VERTEX_EMBEDDING_DIM"] == "${tostring(var.vertex_embedding_dim)}"
    for embedder_name in (defaults["embedder_name"], "clip ViT/B 32"):
        terraform_name = "{}__{}__{}".format(defaults["qdrant_collection_prefix"],
                                             re.sub(r"[^A-Za-z0-9_-]", "-", embedder_name), defaults["embedder_dim"])
        assert Settings.model_fields["qdrant_collection_prefix"].default == defaults["qdrant_collection_prefix"]
        assert vectors.collection_name(embedder_name, defaults["embedder_dim"]) == terraform_name

    # Who holds which key.
    assert LOCALS["secret_env"] == {"qdrant_read_key": "QDRANT_API_KEY", "qdrant_manage_key": "QDRANT_API_KEY"}
    for name, spec in LOCALS["functions"].items():
        assert "qdrant_manage_key" not in spec.get("secrets", []), name
    assert LOCALS["functions"]["products_similar"]["secrets"] == ["mongodb_uri", "qdrant_read_key"]
    assert "qdrant_read_key" in LOCALS["jobs"]["generate_interior"]["secrets"]
    assert "qdrant_manage_key" not in LOCALS["jobs"]["generate_interior"]["secrets"]
    assert "qdrant_manage_key" in LOCALS["jobs"]["import_catalog"]["secrets"]
    # ...and the two jobs run as two accounts, so the generation job's account cannot read the manage key either.
    assert LOCALS["jobs"]["generate_interior"]["service_account"] != LOCALS["jobs"]["import_catalog"]["service_account"]
    assert 'for key in job.secrets : "${job.service_account}/${key}"' in (TERRAFORM / "iam.tf").read_text()


def test_the_deployer_holds_no_iam_admin_role_and_only_zipkku_buckets_and_secrets():
    """Project IAM admin, custom-role admin and service-account admin/user on the project would let the deployer
    make itself owner or act as any account; Secret Manager and Storage admin would reach every secret and bucket
    in the project. Bootstrap (a project administrator) makes what needs IAM rights; the deployer acts as each
    runtime account only, and its bucket and secret rights are conditioned on Zipkku's names."""
    bootstrap = resources(TERRAFORM / "bootstrap")
    deployer_roles = set(bootstrap["google_project_iam_member"]["deployer"]["for_each"])
    forbidden = {"roles/resourcemanager.projectIamAdmin", "roles/iam.roleAdmin", "roles/iam.serviceAccountAdmin",
                 "roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator", "roles/secretmanager.admin",
                 "roles/storage.admin", "roles/owner", "roles/editor", "roles/iam.securityAdmin"}
    assert not deployer_roles & forbidden, sorted(deployer_roles & forbidden)
    for name, binding in bootstrap["google_project_iam_member"].items():
        if binding.get("member") == "${local.deployer}" and name != "deployer":
            assert binding.get("condition"), f"{name}: a project-level grant to the deployer without a condition"
    data_role = bootstrap["google_project_iam_custom_role"]["deployer_data"]["permissions"]
    assert not [p for p in data_role if p.startswith("storage.objects.") or p.startswith("storage.hmacKeys.")]
    acts_as = bootstrap["google_service_account_iam_member"]["deployer_acts_as"]
    assert acts_as["for_each"] == "${google_service_account.runtime}"
    assert acts_as["role"] == "roles/iam.serviceAccountUser"

    # The main configuration (run as the deployer) needs none of those rights: it creates no service account,
    # no custom role, no project-level and no account-level grant; it reads the accounts bootstrap made.
    found = resources()
    for type_name in ("google_service_account", "google_project_iam_custom_role", "google_project_iam_member",
                      "google_project_iam_binding", "google_project_iam_policy", "google_service_account_iam_member",
                      "google_service_account_iam_binding"):
        assert type_name not in found, type_name
    with (TERRAFORM / "bootstrap" / "main.tf").open() as handle:
        bootstrap_locals = {k: unquote(v) for block in hcl2.load(handle)["locals"] for k, v in block.items()}
    assert bootstrap_locals["service_accounts"] == LOCALS["service_accounts"]
    assert "/serviceAccounts/zipkku-deployer@" in (ROOT / "cloudbuild.yaml").read_text()


def dependency_cycles(folder: Path) -> list[list[str]]:
    """Cycles among the resources, data sources, locals and module calls of one configuration, as terraform's
    graph would find them (`terraform validate` cannot run offline): an edge for every reference in a body."""
    bodies: dict[str, str] = {}
    for document in parsed(folder):
        for kind in ("resource", "data"):
            for block in document.get(kind, []):
                for type_name, named in block.items():
                    for name, body in named.items():
                        bodies[f"{'data.' if kind == 'data' else ''}{type_name}.{name}"] = str(body)
        for block in document.get("locals", []):
            for name, value in block.items():
                bodies[f"local.{name}"] = str(value)
        for block in document.get("module", []):
            for name, body in block.items():
                bodies[f"module.{name}"] = str(body)
    edges = {node: set() for node in bodies}
    for node, text in bodies.items():
        for data, type_name, name in REFERENCE.findall(text):
            edges[node].add(f"{data}{type_name}.{name}")
        edges[node] |= {f"local.{n}" for n in re.findall(r"\blocal\.([a-z0-9_]+)", text)}
        edges[node] |= {f"module.{n}" for n in re.findall(r"\bmodule\.([a-z0-9_]+)", text)}
        edges[node] = {target for target in edges[node] if target in bodies}
    cycles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return cycles


@pytest.mark.parametrize("folder", [TERRAFORM, TERRAFORM / "bootstrap"], ids=["root", "bootstrap"])
def test_no_dependency_cycles(folder):
    assert dependency_cycles(folder) == []


def test_a_dependency_cycle_is_found(tmp_path):
    shutil.copytree(TERRAFORM, tmp_path / "terraform", ignore=shutil.ignore_patterns(".terraform"))
    path = tmp_path / "terraform" / "messaging.tf"  # the queue naming the job whose environment names the queue
    path.write_text(path.read_text().replace("${local.generate_job_name}:run",
                                             '${google_cloud_run_v2_job.this["generate_interior"].name}:run'))
    cycles = dependency_cycles(tmp_path / "terraform")
    assert any({"google_cloud_tasks_queue.generate", "google_cloud_run_v2_job.this"} <= set(c) for c in cycles)
