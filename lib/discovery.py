"""Where the deployable units live, and the names they go by. The one place that knows the layout:

    functions/<name>/main.py   a function; its entry point is <name>, its URL path /<name with hyphens>
    jobs/<name>/main.py        a Cloud Run job; deployed as <name with hyphens>

    discovery.function_names()            -> ["ar_similar_objects", "auth_login", ...]
    discovery.url_path("auth_login")      -> "/auth-login"
    discovery.function_source("auth_login") -> Path(".../functions/auth_login/main.py")
    discovery.job_names(), discovery.job_script("import-catalog")

Used by the dev server, packaging, the local event delivery, the OpenAPI document and the tests, so a new
function or job needs no registration anywhere. Nothing here imports a function.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = "functions"
JOBS = "jobs"


def _names(root: Path, kind: str) -> list[str]:
    base = root / kind
    return sorted(p.parent.name for p in base.glob("*/main.py")) if base.is_dir() else []


def function_names(root: Path = ROOT) -> list[str]:
    """Every function (folder under functions/ holding a main.py), sorted."""
    return _names(root, FUNCTIONS)


def job_names(root: Path = ROOT) -> list[str]:
    """Every job (folder under jobs/ holding a main.py), sorted."""
    return _names(root, JOBS)


def deploy_name(name: str) -> str:
    """auth_login -> auth-login: the name Cloud Run and terraform give a function or job."""
    return name.replace("_", "-")


def url_path(name: str) -> str:
    """auth_login -> /auth-login: where the dev server mounts a function (and the OpenAPI path)."""
    return "/" + deploy_name(name)


def function_source(name: str, root: Path = ROOT) -> Path:
    return root / FUNCTIONS / name / "main.py"


def job_script(job_name: str, root: Path = ROOT) -> Path:
    """The job's main.py, from its deploy name ("import-catalog") or folder name ("import_catalog")."""
    return root / JOBS / job_name.replace("-", "_") / "main.py"
