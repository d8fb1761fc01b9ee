"""Offline infrastructure checks: what can be verified about terraform/ and cloudbuild.yaml without a cloud.

    python scripts/check_infra.py [--terraform DIR] [--cloudbuild FILE] [--only syntax,format,...]

In order (syntax and format first and on their own: checkov and trivy silently pass files they cannot parse):
  syntax      every .tf parses (python-hcl2, from the main venv)
  format      every .tf is formatted as `terraform fmt` would (HashiCorp's hclwrite via @cdktf/hcl-tools)
  checkov     `checkov --framework terraform --skip-download`: zero failed checks (inline skips say why)
  trivy       `trivy config --severity HIGH,CRITICAL --exit-code 1`: no high or critical finding
  cloudbuild  `check-jsonschema --builtin-schema vendor.cloudbuild cloudbuild.yaml`

Tools come from `make infra-tools`: checkov, trivy and check-jsonschema in .venv-infra (INFRA_VENV), the HCL
formatter in scripts/infra-tools/node_modules. Exit status 0 only when every selected check passed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFRA_VENV = Path(os.environ.get("INFRA_VENV", ROOT / ".venv-infra"))
HCL_MODULES = ROOT / "scripts" / "infra-tools" / "node_modules"
CHECKS = ("syntax", "format", "checkov", "trivy", "cloudbuild")


class CheckFailed(Exception):
    pass


def tf_files(terraform: Path) -> list[Path]:
    return sorted(p for p in terraform.rglob("*.tf") if ".terraform" not in p.parts)


def run(argv: list[str], timeout: float = 300) -> str:
    """Run a tool; its combined output on success, CheckFailed with that output otherwise."""
    missing = Path(argv[0])
    if missing.is_absolute() and not missing.exists():
        raise CheckFailed(f"{missing} is missing: run `make infra-tools`")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise CheckFailed(f"{argv[0]} is not installed") from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise CheckFailed(output or f"{argv[0]} exited with {proc.returncode}")
    return output


def check_syntax(terraform: Path, _cloudbuild: Path) -> str:
    import hcl2  # python-hcl2 (scripts/requirements-dev.txt)

    files = tf_files(terraform)
    if not files:
        raise CheckFailed(f"no .tf files under {terraform}")
    errors = []
    for path in files:
        try:
            with path.open() as handle:
                hcl2.load(handle)
        except Exception as exc:  # noqa: BLE001 - any parser error is a finding, reported with its file
            errors.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if errors:
        raise CheckFailed("\n".join(errors))
    return f"{len(files)} files parse"


def check_format(terraform: Path, _cloudbuild: Path) -> str:
    if not HCL_MODULES.is_dir():
        raise CheckFailed(f"{HCL_MODULES} is missing: run `make infra-tools`")
    files = [str(p) for p in tf_files(terraform)]
    try:
        run(["node", str(ROOT / "scripts" / "hcl_format.js"), str(HCL_MODULES), *files])
    except CheckFailed as exc:
        raise CheckFailed(f"{exc}\nfix with: node scripts/hcl_format.js {HCL_MODULES} --write FILE...") from None
    return f"{len(files)} files formatted"


def check_checkov(terraform: Path, _cloudbuild: Path) -> str:
    output = run([str(INFRA_VENV / "bin" / "checkov"), "-d", str(terraform), "--framework", "terraform",
                  "--skip-download", "--quiet", "--compact"])
    return output.splitlines()[-1] if output else "no failed checks"


def check_trivy(terraform: Path, _cloudbuild: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="trivy-cache-") as cache:
        run([str(INFRA_VENV / "bin" / "trivy"), "config", "--quiet", "--skip-check-update", "--cache-dir", cache,
             "--severity", "HIGH,CRITICAL", "--exit-code", "1", str(terraform)])
    return "no HIGH or CRITICAL findings"


def check_cloudbuild(_terraform: Path, cloudbuild: Path) -> str:
    return run([str(INFRA_VENV / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.cloudbuild",
                str(cloudbuild)])


RUNNERS: dict[str, Callable[[Path, Path], str]] = {
    "syntax": check_syntax, "format": check_format, "checkov": check_checkov, "trivy": check_trivy,
    "cloudbuild": check_cloudbuild,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terraform", type=Path, default=ROOT / "terraform")
    parser.add_argument("--cloudbuild", type=Path, default=ROOT / "cloudbuild.yaml")
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated subset of: " + ", ".join(CHECKS))
    args = parser.parse_args(argv)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(selected) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks: {', '.join(sorted(unknown))}")

    failed = []
    started = time.monotonic()
    for name in CHECKS:
        if name not in selected:
            continue
        began = time.monotonic()
        try:
            summary = RUNNERS[name](args.terraform.resolve(), args.cloudbuild.resolve())
            print(f"PASS {name:<10} {time.monotonic() - began:5.1f}s  {summary.splitlines()[-1] if summary else ''}")
        except (CheckFailed, subprocess.TimeoutExpired) as exc:
            print(f"FAIL {name:<10} {time.monotonic() - began:5.1f}s\n{exc}")
            failed.append(name)
            if name in ("syntax", "format"):
                print("(stopping: the scanners would pass files they cannot parse)")
                break
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all infra checks passed'} "
          f"in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
