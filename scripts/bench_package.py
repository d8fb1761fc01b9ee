"""What production artifacts weigh: `make package` output and the installed size of the dependencies they carry.

    python scripts/bench_package.py                 # this tree
    python scripts/bench_package.py --before REV    # and, side by side, the tree of git revision REV

- artifacts: every function zip and job build context as scripts/package.py builds them (the revision's own
  package.py for --before), summed per kind.
- installed dependencies: each requirements file resolved to its full dependency closure through the installed
  distributions' metadata in this venv (`make venv` installs all of them), summed over the files each
  distribution installed. Every function and job installs requirements.txt, so that is the size each deployed
  function's build and each job image carries; requirements-local.txt (the local stand-ins') is what they
  carried when the stand-ins' dependencies were part of requirements.txt.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def artifact_sizes(tree: Path, out: Path) -> dict[str, int]:
    """Build the artifacts of `tree` with its own scripts/package.py; artifact -> bytes."""
    subprocess.run([sys.executable, str(tree / "scripts" / "package.py"), "--out", str(out)], check=True,
                   capture_output=True, cwd=tree)
    return {key: info["bytes"] for key, info in json.loads((out / "manifest.json").read_text()).items()}


def _requirements(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found += _requirements(path.parent / line[3:].strip())
        elif line:
            found.append(Requirement(line))
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_closure(path: Path) -> dict[str, int]:
    """distribution -> installed bytes, for every distribution `path` needs (transitively)."""
    sizes: dict[str, int] = {}
    pending: list[tuple[Requirement, str | None]] = [(r, None) for r in _requirements(path)]
    while pending:
        requirement, extra = pending.pop()
        name = _canonical(requirement.name)
        if requirement.marker and not requirement.marker.evaluate({"extra": extra or ""}):
            continue
        if name in sizes:
            continue
        dist = metadata.distribution(requirement.name)
        sizes[name] = sum(f.size or 0 for f in dist.files or [])
        for extra_name in [*requirement.extras, None]:
            for dependency in dist.requires or []:
                pending.append((Requirement(dependency), extra_name))
    return sizes


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def report(label: str, sizes: dict[str, int]) -> None:
    functions = [v for k, v in sizes.items() if k.startswith("functions/")]
    jobs = [v for k, v in sizes.items() if k.startswith("jobs/")]
    print(f"{label}: {len(functions)} function zips {sum(functions):,} bytes (each {min(functions):,}-"
          f"{max(functions):,}), {len(jobs)} job contexts {sum(jobs):,} bytes (each {min(jobs):,}-{max(jobs):,})")


def report_installed(label: str, path: Path) -> None:
    closure = installed_closure(path)
    biggest = ", ".join(f"{k} {_mb(v)}" for k, v in sorted(closure.items(), key=lambda kv: -kv[1])[:3])
    print(f"{label}: {len(closure)} distributions, {_mb(sum(closure.values()))} installed (largest: {biggest})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="a git revision to measure side by side")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            old = Path(tmp) / "before"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, check=True, capture_output=True)
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(old, filter="data")
            report(f"artifacts at {args.before}", artifact_sizes(old, Path(tmp) / "dist-before"))
            report_installed(f"requirements.txt at {args.before}", old / "requirements.txt")
        report("artifacts now", artifact_sizes(ROOT, Path(tmp) / "dist-now"))
    report_installed("requirements.txt now", ROOT / "requirements.txt")
    report_installed("requirements-local.txt now (not deployed)", ROOT / "requirements-local.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
