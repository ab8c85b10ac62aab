"""Issue 12's must-shows with the real docker CLI on the compose cluster: configs, secrets,
volumes and stacks, the seeds' examples typed as they are printed.

Each test removes what it made (services, stacks, secrets, configs, volumes) and leaves every
node running, so the session cluster is left as found. The waits are liveness bounds (30 to 90
s), many times what the awaited thing takes on an idle machine.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import urllib.request
from collections.abc import Iterator

import pytest

from tests.compose._stacks_cli import DOCKER, api_json, docker, in_node, node, sh, talk
from tests.compose.helpers import backend, status_json, swarmlet, wait_for

pytestmark = pytest.mark.skipif(DOCKER is None, reason="no docker CLI installed")

MESH = importlib.util.find_spec("nodeagent.overlay.mesh") is not None
"""The ingress routing mesh (published ports on every node) is helper "mesh"'s work."""


def _all_ready() -> bool:
    rows = status_json()
    return len([r for r in rows if r["status"] == "Ready"]) == 5


class Made:
    """What a test made, removed at its end whatever happened."""

    def __init__(self) -> None:
        self.stacks: list[str] = []
        self.services: list[str] = []
        self.secrets: list[str] = []
        self.configs: list[str] = []
        self.volumes: list[tuple[str, str]] = []  # (node hostname, volume)

    def clean(self) -> None:
        for stack in self.stacks:
            docker("stack", "rm", stack)
        if self.services:
            docker("service", "rm", *self.services)
        # Secrets and configs go once no service uses them (the services' tasks may still stop).
        for kind, names in (("secret", self.secrets), ("config", self.configs)):
            for name in names:
                wait_for(f"{kind} {name} removed", lambda k=kind, n=name: (
                    docker(k, "rm", n).returncode == 0 or docker(k, "inspect", n).returncode != 0), 60, 1)
        for hostname, volume in self.volumes:
            host = node(hostname).docker_host
            wait_for(f"volume {volume} on {hostname} removed", lambda h=host, v=volume: (
                docker("volume", "rm", "-f", v, host=h).returncode == 0), 60, 1)


@pytest.fixture
def made(cluster: str) -> Iterator[Made]:
    wait_for("5 Ready nodes", _all_ready, timeout=60, interval=0.5)
    record = Made()
    try:
        yield record
    finally:
        record.clean()
        for n in backend().nodes():
            if n.state != "running":
                swarmlet("chaos", "start", n.hostname)
        wait_for("5 Ready nodes again", _all_ready, timeout=60, interval=0.5)


def running_tasks(service: str) -> list[dict[str, object]]:
    ids = docker("service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running",
                 service).stdout.split()
    if not ids:
        return []
    return [t for t in api_json("inspect", "--type", "task", *ids) if t["Status"]["State"] == "running"]


def node_name(node_id: str) -> str:
    return str(api_json("node", "inspect", node_id)[0]["Description"]["Hostname"])


def logs(service: str) -> str:
    out = docker("service", "logs", "--raw", service)
    return out.stdout + out.stderr


# --------------------------------------------------------------------------------------------------


def test_the_seeds_config_is_apaches_index_page_on_port_80_of_every_node(made: Made) -> None:
    made.services.append("apachewebserver")
    made.configs.append("example-config")
    created = sh('echo "indexpagina!" | docker config create example-config -')
    assert created.returncode == 0, created.stderr
    create = sh("docker service create --name apachewebserver -p 80:80 --config "
                "src=example-config,target=/usr/local/apache2/htdocs/index.html httpd:alpine", timeout=120)
    assert create.returncode == 0, create.stdout + create.stderr
    assert "verify: Service apachewebserver converged" in create.stdout or "converged" in create.stdout
    (task,) = wait_for("apachewebserver running", lambda: running_tasks("apachewebserver"), 60, 1)
    hostname = node_name(str(task["NodeID"]))
    # The task serves the config as its index page (asked at its own listener, from its node).
    page = in_node(hostname, (
        "import asyncio, urllib.request\n"
        "from nodeagent.agent.taskservice import list_tasks\n"
        f"rows = asyncio.run(list_tasks('{hostname}:7946'))\n"
        f"addr = [r['address'] for r in rows if r['task_id'] == '{task['ID']}'][0]\n"
        "print(urllib.request.urlopen('http://' + addr + '/', timeout=5).read().decode(), end='')\n"))
    assert page == "indexpagina!\n"
    # Port 80 of ANY node's address (the ingress routing mesh).
    if not MESH:
        pytest.xfail("the ingress routing mesh (helper mesh, nodeagent/overlay/mesh.py) is not merged: "
                     "port 80 on every node's address is not served yet")
    for n in backend().nodes():
        def curl(addr: str | None = n.addr) -> str:
            with urllib.request.urlopen(f"http://{addr}:80/", timeout=5) as answer:
                return str(answer.read().decode())
        assert wait_for(f"port 80 on {n.hostname}", curl, 30, 1) == "indexpagina!\n"


MONGO_STACK = """\
version: "3.8"
services:
  mongo:
    image: mongo
    environment:
      MONGO_INITDB_ROOT_USERNAME_FILE: /run/secrets/mongo_user
      MONGO_INITDB_ROOT_PASSWORD_FILE: /run/secrets/mongo_password
    secrets:
      - mongo_user
      - mongo_password
    volumes:
      - mongodata:/data/db
    deploy:
      placement:
        constraints:
          - node.hostname == worker1
volumes:
  mongodata:
secrets:
  mongo_user:
    external: true
  mongo_password:
    external: true
"""


def test_the_seeds_mongo_stack_with_external_secrets(made: Made, tmp_path: pathlib.Path) -> None:
    made.stacks.append("db")
    made.secrets += ["mongo_user", "mongo_password"]
    made.volumes.append(("worker1", "db_mongodata"))
    (tmp_path / "mongo.yml").write_text(MONGO_STACK)
    password = "Pw-9f27c1d4e8"
    # Before the secrets exist: the CLI refuses, naming the secret, and makes no service.
    early = sh("docker stack deploy -c mongo.yml db", cwd=tmp_path)
    assert early.returncode == 1
    # (The CLI names whichever of the two it looks up first: its order varies.)
    refusal = r"^service mongo: secret not found: mongo_(user|password)$"
    assert re.search(refusal, early.stderr, re.M), early.stderr
    assert "db_mongo" not in docker("service", "ls").stdout

    assert sh('echo "adminuser" | docker secret create mongo_user -').returncode == 0
    assert sh(f'echo "{password}" | docker secret create mongo_password -').returncode == 0
    deployed = sh("docker stack deploy -c mongo.yml db", cwd=tmp_path)
    assert deployed.returncode == 0, deployed.stderr
    assert "Creating service db_mongo" in deployed.stdout
    (task,) = wait_for("db_mongo running", lambda: running_tasks("db_mongo"), 60, 1)
    log = wait_for("the user's creation in the log",
                   lambda: (text := logs("db_mongo")) and "Successfully added user" in text and text, 30, 1)
    assert ('Successfully added user: { "user" : "adminuser", "roles" : '
            '[ { "role" : "root", "db" : "admin" } ] }') in log
    assert password not in log
    # The credentials matter, and data survives the task being replaced on the same node.
    assert talk("worker1", str(task["ID"]), f"LOGIN adminuser wrong-{password}") == [
        "MongoServerError: Authentication failed."]
    login = f"LOGIN adminuser {password}"
    assert talk("worker1", str(task["ID"]), login, "SET greeting hallo") == ["OK", "OK"]
    assert docker("service", "update", "--detach", "--force", "db_mongo").returncode == 0
    (again,) = wait_for("a new db_mongo task", lambda: [
        t for t in running_tasks("db_mongo") if t["ID"] != task["ID"]], 60, 1)
    assert talk("worker1", str(again["ID"]), login, "GET greeting") == ["OK", "hallo"]

    # The secret's plaintext: not in the service, the task's environment or any log; on the
    # worker only in memory, and only while its task runs; nowhere on the worker's disk.
    inspected = docker("service", "inspect", "db_mongo").stdout + docker("inspect", str(again["ID"])).stdout
    assert password not in inspected
    assert password not in logs("db_mongo")
    assert "mongo_password" in in_node("worker1", _HELD)
    on_disk = subprocess_grep("worker1", password)
    assert on_disk == "", on_disk
    assert docker("stack", "rm", "db").returncode == 0
    made.stacks.remove("db")
    wait_for("worker1 dropped the secrets", lambda: "mongo_password" not in in_node("worker1", _HELD), 60, 1)


_HELD = (
    "import asyncio\nfrom nodeagent.agent.taskservice import list_payloads\n"
    "import socket\nprint([r['name'] for r in asyncio.run(list_payloads(socket.gethostname() + ':7946'))])\n"
)


def subprocess_grep(hostname: str, needle: str) -> str:
    """Files on the node container's disk that hold ``needle`` (none: "")."""
    import subprocess

    proc = subprocess.run(["docker", "exec", node(hostname).ref, "grep", "-r", "-l", "-F", needle, "/",
                           "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    return proc.stdout


def test_limits_in_use_refusals_and_a_missing_secret(made: Made, tmp_path: pathlib.Path) -> None:
    made.secrets += ["big_secret", "ok_secret"]
    made.configs += ["big_config", "ok_config"]
    made.services.append("uses_secret")
    for name, size in (("big_secret", 512000), ("ok_secret", 511999), ("big_config", 1024000),
                       ("ok_config", 1023999)):
        (tmp_path / name).write_bytes(b"x" * size)
    over = docker("secret", "create", "big_secret", "./big_secret", cwd=tmp_path)
    assert over.returncode == 1
    assert over.stderr.strip() == ("Error response from daemon: rpc error: code = InvalidArgument desc = "
                                   "secret data must be larger than 0 and less than 512000 bytes")
    assert docker("secret", "create", "ok_secret", "./ok_secret", cwd=tmp_path).returncode == 0
    over = docker("config", "create", "big_config", "./big_config", cwd=tmp_path)
    assert over.returncode == 1
    assert over.stderr.strip() == ("Error response from daemon: rpc error: code = InvalidArgument desc = "
                                   "config data must be larger than 0 and less than 1024000 bytes")
    assert docker("config", "create", "ok_config", "./ok_config", cwd=tmp_path).returncode == 0

    # A service naming a secret that does not exist: Swarm's error, nothing created.
    missing = docker("service", "create", "--detach", "--name", "uses_secret", "--secret", "nosuch",
                     "busybox", "sleep", "600")
    assert missing.returncode == 1 and missing.stderr.strip() == "secret not found: nosuch"
    assert docker("service", "inspect", "uses_secret").returncode == 1

    # Removing a secret in use: refused naming the service; removed once the service is gone.
    assert docker("service", "create", "--detach", "--name", "uses_secret", "--secret", "ok_secret",
                  "busybox", "sleep", "600").returncode == 0
    refused = docker("secret", "rm", "ok_secret")
    assert refused.returncode == 1
    assert ("rpc error: code = InvalidArgument desc = secret 'ok_secret' is in use by the following service: "
            "uses_secret") in refused.stderr
    assert docker("service", "rm", "uses_secret").returncode == 0
    assert docker("secret", "rm", "ok_secret").returncode == 0


COUNT = "echo start >> /data/starts; wc -l /data/starts; sleep 3600"


def _counts(service: str) -> list[int]:
    return sorted(int(m) for m in re.findall(r"^(\d+) /data/starts$", logs(service), re.M))


def test_node_local_volumes_count_per_node_and_the_shared_driver_counts_together(made: Made) -> None:
    made.services += ["pinned", "spread", "together"]
    made.volumes += [("worker1", "pinned_starts"), ("worker1", "spread_starts"), ("worker2", "spread_starts")]
    common = ("--detach", "--stop-grace-period", "1s")
    # Pinned to worker1: the count survives the node being killed and started again.
    assert docker("service", "create", *common, "--name", "pinned", "--constraint", "node.hostname==worker1",
                  "--mount", "type=volume,source=pinned_starts,target=/data", "busybox", "sh", "-c",
                  COUNT).returncode == 0
    wait_for("pinned counted 1", lambda: _counts("pinned") == [1], 60, 1)
    assert "pinned_starts" in docker("volume", "ls", "-q", host=node("worker1").docker_host).stdout
    assert "pinned_starts" not in docker("volume", "ls", "-q", host=node("worker2").docker_host).stdout
    swarmlet("chaos", "kill", "worker1")
    swarmlet("chaos", "start", "worker1")
    wait_for("pinned counted 2 after worker1 came back", lambda: 2 in _counts("pinned"), 90, 1)

    # Spread over the two workers, node-local: each node counts its own starts.
    spread = ("--replicas", "2", "--replicas-max-per-node", "1", "--constraint", "node.role==worker")
    assert docker("service", "create", *common, *spread, "--name", "spread", "--mount",
                  "type=volume,source=spread_starts,target=/data", "busybox", "sh", "-c",
                  COUNT).returncode == 0
    wait_for("each worker counted 1", lambda: _counts("spread") == [1, 1], 60, 1)
    assert docker("service", "update", "--detach", "--force", "spread").returncode == 0
    wait_for("each worker counted 2", lambda: _counts("spread")[-2:] == [2, 2], 90, 1)

    # The shared driver: both nodes count in one volume.
    assert docker("service", "create", *common, *spread, "--name", "together", "--mount",
                  "type=volume,source=together_starts,target=/data,volume-driver=swarmlet/shared",
                  "busybox", "sh", "-c", COUNT).returncode == 0
    # (Two tasks starting at once may both append before either counts: 2 and 2, as with any
    # shared storage; node-local volumes would never show more than each node's own starts.)
    wait_for("two starts in one volume", lambda: len(c := _counts("together")) == 2 and max(c) == 2, 60, 1)
    assert docker("service", "update", "--detach", "--force", "together").returncode == 0
    wait_for("four starts in one volume", lambda: len(c := _counts("together")) == 4 and max(c) == 4, 90, 1)
    worker2 = node("worker2").docker_host
    shared = json.loads(docker("volume", "inspect", "together_starts", host=worker2).stdout)
    assert shared[0]["Driver"] == "swarmlet/shared" and shared[0]["Scope"] == "global"
    made.volumes.append(("worker1", "together_starts"))


APP_STACK = """\
version: "3.8"
services:
  web:
    image: nginx:1.25
    environment:
      APP_SECRET_FILE: /run/secrets/app_secret
    secrets:
      - source: app_secret
        target: app_secret
    configs:
      - source: app_index
        target: /usr/share/nginx/html/index.html
        mode: 0444
    networks: [front, back]
    deploy:
      replicas: REPLICAS
      placement:
        constraints:
          - node.role == worker
      update_config:
        parallelism: 1
        delay: 1s
        order: start-first
  cache:
    image: redis:7
    networks: [back]
    deploy:
      replicas: 1
networks:
  front:
  back:
    driver: overlay
secrets:
  app_secret:
    file: ./app_secret.txt
configs:
  app_index:
    file: ./index.html
"""


def test_a_stack_deploys_updates_only_what_changed_and_is_removed_whole(
    made: Made, tmp_path: pathlib.Path
) -> None:
    made.stacks.append("app")
    (tmp_path / "app_secret.txt").write_text("stack-secret-31\n")
    (tmp_path / "index.html").write_text("<h1>from the stack</h1>\n")
    (tmp_path / "stack.yml").write_text(APP_STACK.replace("REPLICAS", "2"))
    out = docker("stack", "deploy", "-c", "stack.yml", "app", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "Creating network app_back", "Creating network app_front", "Creating secret app_app_secret",
        "Creating config app_app_index", "Creating service app_cache", "Creating service app_web",
    ] or sorted(out.stdout.splitlines()) == sorted([
        "Creating network app_back", "Creating network app_front", "Creating secret app_app_secret",
        "Creating config app_app_index", "Creating service app_cache", "Creating service app_web"])
    assert docker("stack", "ls").stdout.split() == ["NAME", "SERVICES", "app", "2"]
    wait_for("3 tasks running",
             lambda: len(running_tasks("app_web")) == 2 and len(running_tasks("app_cache")) == 1, 60, 1)
    ps = docker("stack", "ps", "app").stdout
    assert len([line for line in ps.splitlines() if " Running " in line]) == 3, ps
    for task in running_tasks("app_web"):
        assert node_name(str(task["NodeID"])).startswith("worker")
    web = api_json("service", "inspect", "app_web")[0]
    assert web["Spec"]["Labels"]["com.docker.stack.namespace"] == "app"
    assert web["Spec"]["UpdateConfig"]["Order"] == "start-first"
    assert len(web["Spec"]["TaskTemplate"]["Networks"]) == 2
    cache_before = api_json("service", "inspect", "app_cache")[0]
    cache_tasks = {t["ID"] for t in running_tasks("app_cache")}

    # The file edited: 3 replicas of web. Deployed again, web scales; cache's tasks stay.
    (tmp_path / "stack.yml").write_text(APP_STACK.replace("REPLICAS", "3"))
    again = docker("stack", "deploy", "-c", "stack.yml", "app", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    wait_for("3 web tasks", lambda: len(running_tasks("app_web")) == 3, 60, 1)
    assert {t["ID"] for t in running_tasks("app_cache")} == cache_tasks
    assert api_json("service", "inspect", "app_cache")[0]["Spec"] == cache_before["Spec"]

    removed = docker("stack", "rm", "app")
    assert removed.returncode == 0, removed.stderr
    made.stacks.remove("app")
    wait_for("nothing of app left", lambda: not any(
        docker(kind, "ls", "-q", "--filter", "label=com.docker.stack.namespace=app").stdout.strip()
        for kind in ("service", "network", "secret", "config")), 60, 1)


def test_a_stack_file_with_an_unknown_key_is_refused_before_any_request(
    made: Made, tmp_path: pathlib.Path
) -> None:
    bad = 'version: "3.8"\nservices:\n  web:\n    image: nginx\n    replicaz: 2\n'
    (tmp_path / "bad.yml").write_text(bad)
    # Against an address where nothing listens: the CLI's answer is the file's error, so it
    # never asked anything.
    out = docker("stack", "deploy", "-c", "bad.yml", "bad", cwd=tmp_path, host="tcp://127.0.0.1:9")
    assert out.returncode == 1
    assert "services.web Additional property replicaz is not allowed" in out.stderr
    out = docker("stack", "deploy", "-c", "bad.yml", "bad", cwd=tmp_path)
    assert "Additional property replicaz is not allowed" in out.stderr
    assert "bad" not in docker("stack", "ls").stdout.split()
    made_networks = docker("network", "ls", "-q", "--filter", "label=com.docker.stack.namespace=bad")
    assert made_networks.stdout.strip() == ""
