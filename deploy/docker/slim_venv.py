"""Make the image's virtual environment lean (run by the Dockerfile's builder stage).

`pip install --no-compile` leaves a venv of source files only. Then:

1. **Only what runs is compiled.** entrasync itself is compiled whole. For everything else, a
   warm-up imports every entrasync module with bytecode writing on, so the .pyc of exactly
   the modules that are imported are written.
2. **msgraph goes into a zip archive.** msgraph-sdk is 16,700 generated modules (166 MB of
   source, 125 MB more as .pyc) of which entrasync imports about a dozen. The package is moved
   into `lib/pythonX.Y/msgraph.zip` (about 30 MB; every module is still there and importable)
   and a `.pth` file puts the archive on `sys.path`. The modules the warm-up imported are
   stored with their bytecode (unchecked-hash .pyc next to the .py, where zipimport looks).
   The archive has an entry for every directory: `msgraph.generated` and most packages below
   it are namespace packages (no `__init__.py`), and zipimport finds a namespace package only
   by its directory entry. kiota's build artefacts (`kiota-dom-export.txt`, 37 MB) stay out.
3. **The result is run**: `entrasync demo` tells one full story against the built-in
   emulator, so the image is proven to work before it is tagged; modules imported only
   lazily get their .pyc here too.

The runtime image sets PYTHONDONTWRITEBYTECODE and runs with a read-only root file system, so
nothing is compiled or written there later: a module the warm-up did not reach is compiled in
memory each time a process imports it.

Usage: python slim_venv.py VENV
"""

from __future__ import annotations

import compileall
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ZIPPED = "msgraph"
# Imported by the code but not at module level: the daemon's scheduler and PostgreSQL driver.
WARM_IMPORTS = (
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
    "apscheduler.schedulers.background",
)
# Alembic loads the migrations by file name; a __main__ module would run its program.
SKIP_PREFIXES = ("entrasync.store.migrations",)


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"{venv}: expected one lib/python3*/site-packages, found {found}")
    return found[0]


def _python_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def import_everything(venv: Path) -> None:
    """Import every entrasync module (and WARM_IMPORTS) with .pyc writing on."""
    script = (
        "import importlib, pkgutil, entrasync\n"
        f"skip = {SKIP_PREFIXES!r}\n"
        "for m in pkgutil.walk_packages(entrasync.__path__, 'entrasync.'):\n"
        "    if not m.name.startswith(skip) and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        f"for name in {WARM_IMPORTS!r}:\n"
        "    importlib.import_module(name)\n"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", script], env=_python_env(), check=True)


def run_demo(venv: Path) -> None:
    with tempfile.TemporaryDirectory() as demo_dir:
        subprocess.run(
            [str(venv / "bin" / "entrasync"), "demo", "--dir", demo_dir, "--users", "60"],
            env=_python_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )


def zip_package(site: Path, name: str) -> tuple[Path, int]:
    """Move `site/name` into `site/../name.zip` (every directory, every .py, and an
    unchecked-hash .pyc for each module that was imported) and put the archive on sys.path
    with a .pth file. Returns the archive and how many modules have bytecode in it."""
    package = site / name
    archive = site.parent / f"{name}.zip"
    compiled = 0
    with (
        zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out,
        tempfile.TemporaryDirectory() as scratch,
    ):
        for root, dirs, files in os.walk(package):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            here = Path(root)
            out.write(here, here.relative_to(site).as_posix() + "/")
            for file in sorted(f for f in files if f.endswith(".py")):
                source = here / file
                member = source.relative_to(site).as_posix()
                out.write(source, member)
                if not any((here / "__pycache__").glob(f"{source.stem}.*.pyc")):
                    continue  # never imported: compiled in memory if it ever is
                pyc = Path(scratch) / "module.pyc"
                py_compile.compile(
                    str(source),
                    cfile=str(pyc),
                    dfile=f"{archive}/{member}",
                    doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )
                out.write(pyc, member[: -len(".py")] + ".pyc")
                compiled += 1
    shutil.rmtree(package)
    (site / f"{name}-zip.pth").write_text(f"{archive}\n", encoding="utf-8")
    return archive, compiled


def size_mb(path: Path, pattern: str = "*") -> float:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file()) / 1e6


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    venv = Path(argv[1])
    site = site_packages(venv)
    if not compileall.compile_dir(site / "entrasync", quiet=1):
        return 1
    import_everything(venv)
    archive, compiled = zip_package(site, ZIPPED)
    run_demo(venv)
    print(
        f"{venv}: {size_mb(venv):.1f} MB, of which {size_mb(venv, '*.pyc'):.1f} MB .pyc; "
        f"{archive.name} {archive.stat().st_size / 1e6:.1f} MB with {compiled} modules compiled"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
