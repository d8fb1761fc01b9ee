"""The pipeline installs only hashed lock files (cloudbuild.yaml, `pip install --require-hashes`): each lock must
pin exactly what its requirements file pins, give every package its hashes, and be what the pipeline installs.
`make lock` rewrites the locks after a requirements file changes."""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from scripts.localstack import ROOT

LOCKS = {  # requirements file -> its lock, as `make lock` writes them
    "requirements.txt": "requirements.lock",  # what scripts/package.py ships to function builds and job images
    "scripts/requirements-dev.txt": "scripts/requirements-dev.lock",
    "scripts/requirements-infra.txt": "scripts/requirements-infra.lock",
    "scripts/requirements-emulator.txt": "scripts/requirements-emulator.lock",
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line, following `-r other.txt`."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found.update(pins((path.parent / line[3:].strip()).resolve()))
        elif line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned with =="
            found[canonical(name.split("[")[0])] = version.strip()
    return found


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile style lock."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==(\S+)", line)
        if match:
            current = canonical(match.group(1))
            entries[current] = (match.group(2), [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            assert current, f"{path.name}: a hash before any package"
            entries[current][1].append(digest)
    return entries


@pytest.mark.parametrize("requirements", sorted(LOCKS))
def test_each_lock_pins_what_its_requirements_file_pins_with_hashes(requirements):
    lock = ROOT / LOCKS[requirements]
    assert lock.is_file(), f"{LOCKS[requirements]} is missing: run `make lock`"
    wanted, have = pins(ROOT / requirements), locked(lock)
    stale = {name: (version, have.get(name, ("missing",))[0]) for name, version in wanted.items()
             if have.get(name, (None,))[0] != version}
    assert not stale, f"{LOCKS[requirements]} disagrees with {requirements} (wanted, locked): {stale}; run `make lock`"
    assert all(hashes for _, hashes in have.values()), [name for name, (_, h) in have.items() if not h]
    if requirements.endswith("emulator.txt"):  # installed with --no-deps: the lock is that one package
        assert set(have) == set(wanted)


def test_the_pipeline_installs_only_the_hashed_locks():
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    script = next(step for step in build["steps"] if step["id"] == "install")["args"][-1]
    installs = [line.strip() for line in script.splitlines() if "pip install" in line]
    assert installs
    for line in installs:
        assert "--require-hashes" in line, line
        files = re.findall(r"-r (\S+)", line)
        assert files and all(f in LOCKS.values() for f in files), line
    assert {f for line in installs for f in re.findall(r"-r (\S+)", line)} == {
        lock for lock in LOCKS.values() if lock.startswith("scripts/")}


def test_function_and_job_builds_install_the_hashed_runtime_lock(tmp_path):
    from scripts import package

    package.build(ROOT, tmp_path, ["auth_login", "generate_interior"])
    lock = (ROOT / "requirements.lock").read_bytes()
    with zipfile.ZipFile(tmp_path / "functions" / "auth_login.zip") as archive:
        assert archive.read("requirements.txt") == lock
    with tarfile.open(tmp_path / "jobs" / "generate_interior.tar.gz") as archive:
        assert archive.extractfile("requirements.txt").read() == lock
        dockerfile = archive.extractfile("Dockerfile").read().decode()
    assert "pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.txt" in dockerfile


def test_stale_lock_is_found(tmp_path):
    (tmp_path / "base.txt").write_text("requests==2.34.2\n")
    (tmp_path / "dev.txt").write_text("-r base.txt\npytest==9.2.0  # tests\n")
    (tmp_path / "dev.lock").write_text("pytest==9.2.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
                                       "requests==2.33.0 \\\n    --hash=sha256:" + "b" * 64 + "\n")
    assert pins(tmp_path / "dev.txt") == {"requests": "2.34.2", "pytest": "9.2.0"}
    assert locked(tmp_path / "dev.lock")["requests"] == ("2.33.0", ["b" * 64])
