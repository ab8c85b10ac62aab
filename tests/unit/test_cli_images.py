"""Image builds are keyed by their inputs: reused while unchanged, rebuilt when one changes."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from deploy import images, pythoncopy
from tests.needs import need


@pytest.fixture
def tree(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """A small stand-in for the source tree."""
    (tmp_path / "deploy").mkdir()
    (tmp_path / "nodeagent" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["grpcio>=1.60"]\n')
    (tmp_path / "deploy" / "Dockerfile.node").write_text("FROM scratch\n")
    for script in ("node-entrypoint.sh", "python-copy.sh"):
        (tmp_path / "deploy" / script).write_text("#!/bin/sh\n")
    (tmp_path / "deploy" / "images.py").write_text("# builder\n")
    (tmp_path / "nodeagent" / "agent.py").write_text("x = 1\n")
    monkeypatch.setattr(images, "repo_root", lambda: tmp_path)
    monkeypatch.setenv("SWARMLET_CACHE", str(tmp_path / ".cache" / "images"))
    return tmp_path


def test_node_key_follows_sources_not_bytecode(tree: pathlib.Path) -> None:
    key = images.node_image_key("swarmlet/base:abc")
    assert key == images.node_image_key("swarmlet/base:abc")
    (tree / "nodeagent" / "__pycache__" / "agent.cpython-311.pyc").write_bytes(b"\0junk")
    (tree / "README.md").write_text("docs do not go into the image\n")
    assert images.node_image_key("swarmlet/base:abc") == key
    (tree / "nodeagent" / "agent.py").write_text("x = 2\n")
    changed = images.node_image_key("swarmlet/base:abc")
    assert changed != key
    assert images.node_image_key("swarmlet/base:def") != changed
    (tree / "deploy" / "Dockerfile.node").write_text("FROM scratch\nENV A=1\n")
    assert images.node_image_key("swarmlet/base:def") != changed


def test_node_key_kept_digests_never_hide_an_edit(tree: pathlib.Path) -> None:
    import os

    agent = tree / "nodeagent" / "agent.py"
    hour_ago = agent.stat().st_mtime - 3600
    for path in (agent, tree / "pyproject.toml", tree / "deploy" / "Dockerfile.node",
                 tree / "deploy" / "images.py"):
        os.utime(path, (hour_ago, hour_ago))
    key = images.node_image_key("swarmlet/base:abc")
    assert (images.cache_dir() / "source-digests.json").exists()  # old enough to be kept
    assert images.node_image_key("swarmlet/base:abc") == key
    agent.write_text("x = 2\n")  # the same size; a later mtime
    os.utime(agent, (hour_ago + 1, hour_ago + 1))
    edited = images.node_image_key("swarmlet/base:abc")
    assert edited != key
    agent.write_text("x = 1\n")
    os.utime(agent, (hour_ago + 2, hour_ago + 2))
    assert images.node_image_key("swarmlet/base:abc") == key  # the content decides, not the stamp


def test_base_key_follows_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    key = images.base_image_key()
    assert len(key) == 12 and key == images.base_image_key()
    monkeypatch.setattr(images, "BASE_PACKAGES", (*images.BASE_PACKAGES, "curl"))
    assert images.base_image_key() != key


def test_prometheus_key_follows_its_packages_not_the_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    key = images.prometheus_image_key()
    assert len(key) == 12 and key != images.base_image_key()
    monkeypatch.setattr(images, "BASE_PACKAGES", (*images.BASE_PACKAGES, "curl"))
    assert images.prometheus_image_key() == key  # the node's packages are not its inputs
    monkeypatch.setattr(images, "PROMETHEUS_PACKAGES", (*images.PROMETHEUS_PACKAGES, "curl"))
    assert images.prometheus_image_key() != key


class FakeImages:
    """The engine's images as inspect_image and tag_image see them: tag -> image id."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = dict(tags)
        self.tagged: list[tuple[str, str]] = []

    def inspect(self, tag: str) -> dict[str, object] | None:
        return {"Id": self.tags[tag], "Size": 165_000_000} if tag in self.tags else None

    def tag(self, source: str, target: str) -> None:
        self.tagged.append((source, target))
        self.tags[target] = self.tags[source]


@pytest.fixture
def engine_images(monkeypatch: pytest.MonkeyPatch) -> FakeImages:
    fake = FakeImages({})
    monkeypatch.setattr(images, "inspect_image", fake.inspect)
    monkeypatch.setattr(images, "tag_image", fake.tag)
    monkeypatch.setattr(images, "run_step", lambda cmd, *a, **k: pytest.fail(f"ran {cmd}"))
    return fake


def test_existing_prometheus_image_is_reused_and_tagged_latest(engine_images: FakeImages) -> None:
    tag = f"swarmlet/prometheus:{images.prometheus_image_key()}"
    engine_images.tags = {tag: "sha256:new", images.PROMETHEUS_IMAGE: "sha256:old"}
    built = images.ensure_prometheus_image()
    assert not built.built and built.tag == tag and built.size_bytes == 165_000_000
    assert engine_images.tagged == [(tag, "swarmlet/prometheus:latest")]
    images.ensure_prometheus_image()  # latest names it now: no second tag
    assert engine_images.tagged == [(tag, "swarmlet/prometheus:latest")]


def test_existing_base_image_is_reused_without_building(engine_images: FakeImages) -> None:
    engine_images.tags = {f"swarmlet/base:{images.base_image_key()}": "sha256:base"}
    built = images.ensure_base_image()
    assert not built.built and built.tag == f"swarmlet/base:{images.base_image_key()}"
    assert built.size_bytes == 165_000_000 and engine_images.tagged == []


def test_missing_mmdebstrap_without_root_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setattr("deploy.images.shutil.which", lambda name: None)
    monkeypatch.setattr("deploy.images.os.geteuid", lambda: 1000)
    with pytest.raises(images.BuildError, match=r"mmdebstrap is missing: install it \(apt-get install"):
        images._ensure_mmdebstrap(tmp_path / "log", lambda msg: None)


def test_failed_step_names_itself_and_its_log(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(images.BuildError) as err:
        images.run_step(["sh", "-c", "echo the reason; exit 7"], log, "docker import")
    text = str(err.value)
    assert text.startswith("docker import failed (exit 7); log: ") and "the reason" in text


def test_wheels_are_asked_for_bookworms_python_and_glibc() -> None:
    # The image runs CPython 3.11 on glibc 2.36: every manylinux level up to 2.36 fits, none above.
    assert "manylinux_2_36_x86_64" in images._PLATFORMS
    assert "manylinux_2_17_x86_64" in images._PLATFORMS and "manylinux2014_x86_64" in images._PLATFORMS
    assert not any(p.startswith("manylinux_2_37") for p in images._PLATFORMS)


def test_compose_file_never_pulls_and_binds_each_node_on_a_loopback_address_of_its_own() -> None:
    need("the docker command is not installed here" if shutil.which("docker") is None else None)
    config = subprocess.run(
        ["docker", "compose", "-f", str(images.repo_root() / "compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(pathlib.Path.home()),
             "SWARMLET_STATE": "/nonexistent"},
    )
    compose_missing = config.returncode != 0 and "is not a docker command" in config.stderr
    need("docker compose is not installed here" if compose_missing else None)
    import json

    assert config.returncode == 0, config.stderr
    project = json.loads(config.stdout)
    services = project["services"]
    prometheus = services.pop("prometheus")
    assert sorted(services) == ["manager1", "manager2", "manager3", "worker1", "worker2"]
    # The cluster's Prometheus: our own image, never pulled, on an address no node has, and
    # finding the nodes by the alias every one of them carries.
    assert prometheus["image"] == images.PROMETHEUS_IMAGE and prometheus["pull_policy"] == "never"
    assert [(p["host_ip"], p["published"]) for p in prometheus["ports"]] == [("127.0.3.1", "9090")]
    assert all(s["networks"]["cluster"]["aliases"] == ["nodes"] for s in services.values())
    assert "- names: [nodes]" in (images.repo_root() / "deploy" / "prometheus.yml").read_text()
    addrs = {"manager1": "127.0.1.1", "manager2": "127.0.1.2", "manager3": "127.0.1.3",
             "worker1": "127.0.2.1", "worker2": "127.0.2.2"}
    for name, svc in services.items():
        assert svc["image"] == images.NODE_IMAGE and svc["pull_policy"] == "never", name
        assert svc["init"] is True, name
        assert all(p["host_ip"] == addrs[name] for p in svc["ports"]), name
        assert svc["hostname"] == name and f"--hostname={name}" in svc["command"], name
        assert not any("TOKEN" in key.upper() for key in svc.get("environment", {})), name
        # Tokens are secrets; no CA key is a secret, a file or anything else on the host.
        assert all("ca" not in str(secret.get("source", secret)) for secret in svc.get("secrets") or []), name
        assert bool(svc.get("secrets")) == (name != "manager1"), name
    # manager1 creates the cluster (its CA and tokens in its own volume); the others join.
    assert "--bootstrap" in services["manager1"]["command"]
    for name in ("manager2", "manager3", "worker1"):
        assert "--bootstrap" not in services[name]["command"], name
        assert not any(c.startswith("--initial-cluster") for c in services[name]["command"]), name
    assert {v["source"] for s in services.values() for v in s.get("volumes", [])} == {
        "manager1-data", "manager2-data", "manager3-data", "shared-volumes", "python"
    }
    # Every node mounts the node image's Python copy, read-only; compose never makes or removes
    # that volume (deploy/images.py does), and a plain compose uses swarmlet/node:latest's.
    for name, svc in services.items():
        python = [v for v in svc.get("volumes", []) if v["source"] == "python"]
        assert [(v["target"], v.get("read_only")) for v in python] == [
            (pythoncopy.PYTHON_COPY_PATH, True)], name
    assert project["volumes"]["python"]["external"] is True
    assert project["volumes"]["python"]["name"] == pythoncopy.python_volume(images.NODE_IMAGE)
    # The swarmlet/shared volume driver's folder: one compose volume, in every node.
    for name, svc in services.items():
        shared = [v for v in svc.get("volumes", []) if v["source"] == "shared-volumes"]
        assert [v["target"] for v in shared] == ["/var/lib/swarmlet-shared"], name
    assert list(project["networks"]) == ["cluster"]


def test_the_python_copy_is_made_once_per_image_and_again_only_when_it_is_not_that_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = "swarmlet/node:0123456789ab"
    assert pythoncopy.python_volume(tag) == "swarmlet-python-0123456789ab"
    assert pythoncopy.python_volume(images.NODE_IMAGE) == "swarmlet-python-latest"
    config: dict[str, object] = {"Labels": {pythoncopy.NODE_KEY_LABEL: "0123456789ab"},
                                 "Entrypoint": [pythoncopy.ENTRYPOINT]}
    volumes: dict[str, str | None] = {}  # volume -> the KEY in it

    def inspect(kind: str, name: str) -> dict[str, object] | None:
        if kind == "image":
            return {"Id": "sha256:x", "Config": config}
        return {"Name": name} if name in volumes else None

    monkeypatch.setattr(pythoncopy, "_inspect", inspect)
    monkeypatch.setattr(pythoncopy, "python_volume_key", lambda name: volumes.get(name))
    ran: list[list[str]] = []

    def docker(args: list[str]) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        if args[:2] == ["volume", "create"]:
            volumes[args[2]] = None
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(pythoncopy, "_docker", docker)
    assert pythoncopy.ensure_python_volume(tag) is True  # no volume yet: copied
    assert ran[-1][-3:] == ["-v", f"swarmlet-python-0123456789ab:{pythoncopy.PYTHON_COPY_PATH}", tag]
    assert "/usr/local/bin/swarmlet-python-copy" in ran[-1]
    volumes["swarmlet-python-0123456789ab"] = "0123456789ab"
    assert pythoncopy.ensure_python_volume(tag) is False and len(ran) == 1  # it holds this image's copy
    volumes["swarmlet-python-latest"] = "fedcba987654"  # latest's copy is of an earlier build
    assert pythoncopy.ensure_python_volume(tag, name="swarmlet-python-latest") is True and len(ran) == 2
    # An image from before the copies (no copy script): an empty volume, so that compose can
    # mount it, and no copy attempted.
    config["Entrypoint"] = ["python3", "-m", "nodeagent"]
    assert pythoncopy.ensure_python_volume(tag, name="swarmlet-python-old") is False
    assert ran[-1] == ["volume", "create", "swarmlet-python-old"] and len(ran) == 3


def test_a_python_volume_s_key_is_read_from_its_folder(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: pathlib.Path) -> None:
    class Engine:
        def volume(self, name: str) -> dict[str, object] | None:
            return {"Mountpoint": str(tmp_path / name)} if name != "missing" else None

    monkeypatch.setattr("deploy.hostengine.host_engine", lambda: Engine())  # volume inspect over the socket
    assert pythoncopy.python_volume_key("missing") is None
    (tmp_path / "filled").mkdir()
    assert pythoncopy.python_volume_key("filled") is None  # a copy cut short: no KEY
    (tmp_path / "filled" / "KEY").write_text("0123456789ab\n")
    assert pythoncopy.python_volume_key("filled") == "0123456789ab"
