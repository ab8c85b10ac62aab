"""deploy/run-tests.sh agrees with the compose tests: no engine means skip, or failure under CI=true."""

from __future__ import annotations

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_script(tmp_path: pathlib.Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """run-tests.sh with no engine reachable, only collecting this folder's decision tests."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-such-docker.sock"
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "run-tests.sh"), "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/unit/test_needs.py"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_without_ci_the_script_says_the_compose_tests_will_be_skipped(tmp_path: pathlib.Path) -> None:
    proc = run_script(tmp_path, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no Docker engine answers" in proc.stdout and "will be skipped" in proc.stdout
    assert "will fail" not in proc.stdout + proc.stderr


def test_with_ci_true_the_script_says_they_will_fail_and_why(tmp_path: pathlib.Path) -> None:
    proc = run_script(tmp_path, "true")
    assert "CI=true and no Docker engine answers" in proc.stderr and "will fail" in proc.stderr
    # docker's own reason: the socket it could not reach (or that docker is not installed)
    assert "no-such-docker.sock" in proc.stderr or "not found" in proc.stderr
    assert "will be skipped" not in proc.stdout
