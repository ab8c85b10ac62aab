"""A missing requirement (Docker engine, compose plugin, images) skips a test, or fails it under CI=true."""

from __future__ import annotations

import pytest

from tests.needs import in_ci, need, verdict

REASON = "no Docker engine answers: Cannot connect to the Docker daemon at unix:///nonexistent.sock."


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", " true\n"])
def test_ci_true_turns_the_skip_into_a_failure_naming_the_reason(value: str) -> None:
    assert in_ci({"CI": value})
    action, message = verdict(REASON, {"CI": value})
    assert action == "fail"
    assert message.startswith("CI=true") and message.endswith(REASON)


@pytest.mark.parametrize("env", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}, {"CI": "no"}])
def test_elsewhere_the_test_skips_with_the_reason(env: dict[str, str]) -> None:
    assert not in_ci(env)
    assert verdict(REASON, env) == ("skip", REASON)


def test_need_skips_or_fails_through_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    need(None)  # nothing missing: nothing happens, CI or not
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"nonexistent\.sock"):
        need(REASON)
    monkeypatch.setenv("CI", "true")
    need(None)
    with pytest.raises(pytest.fail.Exception, match=r"^CI=true.*nonexistent\.sock"):
        need(REASON)
