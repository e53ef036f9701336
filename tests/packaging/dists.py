"""crashfleet as users install it: sdist and wheel built from the committed tree, checked, installed
into a fresh venv outside the source tree.

`python -m tests.packaging.dists VENV` does it by hand (./dev test runs the e2e tests again against
the crashfleet it installs there). The tree is copied from `git ls-files` first, so a build that
leans on an untracked file fails here, as it would for a user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ("controller", "agent", "inventory")
CACHE = Path(os.environ.get("CRASHFLEET_TEST_CACHE", "/var/cache/crashfleet-tests"))
BIN = Path(sys.executable).parent
# Files the zipapp adds to the agent's own: bytecode, its build id, the entry point, the vendored packages.
ZIPAPP_ADDED = ("crashfleet/__init__.py", "__main__.py", "crashfleet/agent/BUILD")
VENDORED = ("pexpect/", "ptyprocess/")


def run(argv: list[str], timeout: float = 600, **kwargs: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return str(done.stdout)


def tracked(*paths: str) -> list[str]:
    """Files of the tree under paths as a commit of it would hold them: tracked, or new and not ignored."""
    argv = ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths]
    return sorted(set(run(argv).split("\0")[:-1]))


def build(out: Path) -> tuple[Path, Path]:
    """(sdist, wheel) built as `python -m build` does (isolated; the wheel from the sdist), from a
    copy of the committed tree; both checked by twine."""
    with tempfile.TemporaryDirectory(prefix="crashfleet-src-") as tmp:
        for name in tracked():
            dest = Path(tmp) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest)
        run([sys.executable, "-m", "build", "--outdir", str(out), tmp])
    [sdist] = out.glob("crashfleet-*.tar.gz")
    [wheel] = out.glob("crashfleet-*.whl")
    run([str(BIN / "twine"), "check", "--strict", str(sdist), str(wheel)])
    return sdist, wheel


def uv_env(home: Path | None = None) -> dict[str, str]:
    """uv's environment: the shared cache (a second install is offline-fast), this machine's Python
    and CA store (the registry's proxy needs it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRASHFLEET_", "VIRTUAL_ENV", "PYTHON"))}
    env |= {"UV_CACHE_DIR": str(CACHE / "uv"), "UV_PYTHON_DOWNLOADS": "never", "UV_NATIVE_TLS": "1"}
    if home is not None:
        env["HOME"] = str(home)
    return env


def install(wheel: Path, venv: Path) -> Path:
    """A fresh venv with the wheel and its dependencies from PyPI; its `crashfleet` command."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    run([str(BIN / "uv"), "venv", "--quiet", "--python", python, str(venv)], env=uv_env())
    run(
        [str(BIN / "uv"), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel)],
        env=uv_env(),
    )
    return venv / "bin" / "crashfleet"


def missing_from_wheel(wheel: Path) -> list[str]:
    """Files of the three trees the wheel lacks, named as modules where they are ones."""
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    return [_name(path) for path in tracked(*TREES) if f"crashfleet/{path}" not in shipped]


def missing_from_zipapp(zipapp: Path) -> list[str]:
    """Agent files of the tree that the zipapp built by an installed crashfleet lacks, and files it
    has that the tree does not (neither may exist)."""
    with zipfile.ZipFile(zipapp) as archive:
        members = {
            name
            for name in archive.namelist()
            if not name.endswith(".pyc") and name not in ZIPAPP_ADDED and not name.startswith(VENDORED)
        }
    tree = {f"crashfleet/{path}" for path in tracked("agent")}
    return [f"missing {_name(p[len('crashfleet/') :])}" for p in sorted(tree - members)] + [
        f"not in the tree: {p}" for p in sorted(members - tree)
    ]


def _name(path: str) -> str:
    """agent/domains/__init__.py -> crashfleet.agent.domains (agent/domains/__init__.py)."""
    if not path.endswith(".py"):
        return path
    module = path[: -len(".py")].removesuffix("/__init__").replace("/", ".")
    return f"crashfleet.{module} ({path})"


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="crashfleet-dist-") as dist:
        _, built = build(Path(dist))
        problems = missing_from_wheel(built)
        if problems:
            sys.exit("the wheel lacks: " + ", ".join(problems))
        if target.exists():
            shutil.rmtree(target)
        print(install(built, target))
