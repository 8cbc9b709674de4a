"""The container image: the Dockerfile's promises, the venv packing (deploy/docker/
slim_venv.py) on a small package shaped like msgraph, and, where a Docker engine answers and
not in CI (it pulls a base image and takes minutes), a real build that runs `demo` inside
the image with the production flags (read-only root, no capabilities)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLIM_VENV = ROOT / "deploy" / "docker" / "slim_venv.py"
MAX_IMAGE_BYTES = 300_000_000


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _slim_venv() -> ModuleType:
    spec = importlib.util.spec_from_file_location("slim_venv", SLIM_VENV)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dockerfile_builds_from_the_engine_alone() -> None:
    text = _dockerfile()
    # A `# syntax=` line makes BuildKit pull a frontend even when the base image is mirrored.
    assert not re.search(r"(?im)^#\s*syntax\s*=", text)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "pip install --no-compile" in text  # pip would compile all of msgraph
    assert "compileall" not in text  # over all of msgraph it added 160 MB of .pyc
    assert "COPY deploy/docker/slim_venv.py" in text
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "!deploy/docker/slim_venv.py" in ignore  # in the build context despite `deploy`
    assert (
        'HEALTHCHECK --interval=60s --timeout=10s --start-period=120s --retries=3 \\\n    CMD ["entrasync", "healthcheck"]'
        in text
    )
    # healthcheck's exit codes, as they are (78: no readable config, so no daemon.listen).
    said = " ".join(text.split("\nHEALTHCHECK")[0].rsplit("\n\n", 1)[-1].split())
    for phrase in (
        "exits 0 when",
        "1 when it answers 503",
        "78 when it cannot read a valid config",
    ):
        assert phrase in said.replace("# ", ""), phrase


def _fake_msgraph(site: Path) -> None:
    """A package like msgraph: a regular package whose subpackages are namespace packages
    (no __init__.py), one module imported (it has a .pyc) and one never imported."""
    generated = site / "msgraph" / "generated" / "users"
    generated.mkdir(parents=True)
    (site / "msgraph" / "__init__.py").write_text(
        "from msgraph.generated.users.delta import VALUE\n", encoding="utf-8"
    )
    (generated / "delta.py").write_text("VALUE = 'from the zip'\n", encoding="utf-8")
    (generated / "unused.py").write_text("raise RuntimeError('never imported')\n", "utf-8")
    (site / "msgraph" / "generated" / "kiota-dom-export.txt").write_text("x" * 1000, "utf-8")
    subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(site)!r}); import msgraph"],
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        check=True,
    )
    assert list((generated / "__pycache__").glob("delta.*.pyc"))


def test_msgraph_is_packed_into_a_zip_that_imports_with_its_bytecode(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    _fake_msgraph(site)
    archive, compiled = _slim_venv().zip_package(site, "msgraph")

    assert not (site / "msgraph").exists()
    assert (site / "msgraph-zip.pth").read_text(encoding="utf-8") == f"{archive}\n"
    names = set(zipfile.ZipFile(archive).namelist())
    assert compiled == 2  # msgraph/__init__ and the delta module were imported
    assert {"msgraph/generated/", "msgraph/generated/users/"} <= names  # namespace packages
    assert "msgraph/generated/users/delta.pyc" in names
    assert "msgraph/generated/users/unused.py" in names
    assert "msgraph/generated/users/unused.pyc" not in names
    assert not any(n.endswith(".txt") or "__pycache__" in n for n in names)

    probe = (
        "import site, sys; site.addsitedir(sys.argv[1]); "
        "import msgraph.generated.users.delta as m; print(m.VALUE, m.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(site)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    value, where = done.stdout.rsplit(" ", 1)
    assert value == "from the zip"
    assert where.strip() == f"{archive}/msgraph/generated/users/delta.pyc"


# ---- a real build, where an engine answers ---------------------------------------------


def _engine() -> str | None:
    """Why the image test cannot run here, or None when it can."""
    if os.environ.get("CI", "").lower() == "true":
        return "CI=true: the image build is kept out of CI's critical path"
    if shutil.which("docker") is None:
        return "no docker client"
    answer = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if answer.returncode != 0:
        return f"no Docker engine answers ({answer.stderr.strip().splitlines()[-1:]})"
    return None


def _docker(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_image_builds_small_and_runs_the_demo_read_only() -> None:
    reason = _engine()
    if reason:
        pytest.skip(reason)
    tag = f"entrasync-test:{uuid.uuid4().hex[:8]}"
    built = _docker("build", "-t", tag, str(ROOT), timeout=3000)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        size = int(_docker("image", "inspect", "--format", "{{.Size}}", tag, timeout=60).stdout)
        assert size < MAX_IMAGE_BYTES, f"{tag} is {size / 1e6:.0f} MB"
        hardened = ["run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
        hardened += ["--security-opt", "no-new-privileges", tag]
        demo = _docker(*hardened, "demo", "--users", "60", timeout=600)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert "audit verify" in demo.stdout and "chain intact" in demo.stdout
        # No config in the image: healthcheck cannot know daemon.listen (exit 78, documented).
        health = _docker(*hardened, "healthcheck", timeout=120)
        assert health.returncode == 78, health.stdout + health.stderr
        whoami = _docker("run", "--rm", "--entrypoint", "id", tag, "-u", timeout=120)
        assert whoami.stdout.strip() == "10001"
    finally:
        _docker("image", "rm", "--force", tag, timeout=120)
