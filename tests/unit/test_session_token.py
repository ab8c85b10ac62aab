"""A joining node refuses a malformed token itself, before any manager answers."""

from __future__ import annotations

import asyncio
import pathlib
from types import SimpleNamespace

import pytest

from nodeagent.agent.session import AgentSession, JoinRefused


def _session(tmp_path: pathlib.Path, token: str) -> AgentSession:
    token_file = tmp_path / "worker_token"
    token_file.write_text(token + "\n")
    options = SimpleNamespace(role="worker", token_file=str(token_file), manager_token_file=None,
                              data_dir=str(tmp_path), time_scale=1.0, advertise_addr="127.0.0.1",
                              cluster_port=2377)
    context = SimpleNamespace(options=options, node_id="a" * 25, hostname="w1")
    # No manager answers at this address: a well-formed token would keep retrying.
    return AgentSession(context, lambda: ["127.0.0.1:1"])


@pytest.mark.parametrize("token", ["SWMTKN-1-nope", "hello", "SWMTKN-1-" + "0" * 50 + "-" + "A" * 25])
def test_malformed_token_is_refused_at_once(tmp_path: pathlib.Path, token: str) -> None:
    session = _session(tmp_path, token)
    with pytest.raises(JoinRefused, match="invalid join token"):
        asyncio.run(asyncio.wait_for(session.join(), timeout=5))
    assert not (tmp_path / "session.json").exists()
