"""Databases: postgres, mysql, mariadb and mongo, as far as credentials, readiness and data go.

What is emulated is what Swarm tutorials exercise with these images: the official entrypoints'
``*_FILE`` convention (a variable ``X_FILE`` names a file, usually a secret at
``/run/secrets/NAME``, whose content is ``X``; setting both is the entrypoint's error, a missing
file its bash error), their refusal to start without a password, their start-up log ending in
the line people wait for ("database system is ready to accept connections", "ready for
connections"), and a listener on the image's port (5432, 3306). A line tells which user was set
up and where the password came from, never the password.

Data: the server keeps its users (salted SHA-256 of the passwords, never the passwords) and
what clients stored in one file of its data directory (``/var/lib/postgresql/data``,
``/var/lib/mysql``, ``/data/db``), through the container's file system: with a volume there the
data outlives the task, and a task started again on it finds the database initialised and skips
initialisation, as the real entrypoints do (the credentials of the first start stay the ones that
count); without a volume it is the container's own layer and goes with the task.

No SQL is emulated. The listener speaks a tiny line protocol, enough to check credentials and
data from a test or a healthcheck: ``LOGIN user password [database]`` answers ``OK`` or the
server's own FATAL/ERROR words, ``PING`` answers ``PONG``, ``QUIT`` closes; after a login,
``SET key value`` stores (``OK``), ``GET key`` answers the value or ``(nil)``, ``KEYS`` lists the
keys; anything else before a login is refused as the server would refuse an unauthenticated
client, after it ``ERROR: swarmlet emulates no SQL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from nodeagent.images.base import FsError, ImageInfo, ListeningProcess, Process, TaskEnv, image_info

__all__ = ["MARIADB", "MONGO", "MYSQL", "POSTGRES", "DatabaseImage", "DatabaseProcess", "StartFailed",
           "file_env", "password_hash"]


class StartFailed(Exception):
    """The entrypoint gives up: its lines go to stderr and the container exits 1."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0] if lines else "")
        self.lines = lines


@dataclass(frozen=True)
class Setting:
    """One credential variable as the entrypoint resolved it."""

    value: str
    source: str  # "" (unset or default), "NAME" or "the file PATH (NAME_FILE)"


def file_env(env: TaskEnv, name: str, default: str = "", *, both_error: str, entrypoint: str) -> Setting:
    """The docker-library entrypoints' ``file_env NAME``: NAME, or the content of NAME_FILE.

    ``both_error`` is the image's words when both are set ({var} and {file} filled in);
    a NAME_FILE that names no mounted file fails as bash's ``$(< path)`` does under ``set -e``.
    """
    direct, path = env.env.get(name, ""), env.env.get(f"{name}_FILE", "")
    if direct and path:
        raise StartFailed(both_error.format(var=name, file=f"{name}_FILE"))
    if path:
        content = env.read_file(path)
        if content is None:
            raise StartFailed(f"{entrypoint}: line 22: {path}: No such file or directory")
        # bash's "$(< file)" drops trailing newlines: `echo pw | docker secret create` works.
        return Setting(content.decode(errors="replace").rstrip("\n"), f"the file {path} ({name}_FILE)")
    if direct:
        return Setting(direct, name)
    return Setting(default, "")


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def password_hash(password: str, salt: str | None = None) -> str:
    """``salt$sha256(salt + password)``: what the data directory keeps instead of a password."""
    salt = salt if salt is not None else secrets.token_hex(8)
    return f"{salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"


def _password_ok(stored: str, password: str) -> bool:
    salt, _, _digest = stored.partition("$")
    return secrets.compare_digest(password_hash(password, salt), stored)


class DatabaseProcess(ListeningProcess):
    """A database server's main process: configure from the environment, listen, run until SIGTERM."""

    port = 0  # the container port
    flavour = ""
    data_dir = "/"  # where the image keeps its data (a volume is mounted there to keep it)

    def __init__(self, env: TaskEnv) -> None:
        """Nothing is read until ``start``."""
        super().__init__(env)
        self.users: dict[str, str] = {}  # user -> password_hash(password)
        self.databases: set[str] = set()
        self.data: dict[str, str] = {}  # what clients SET
        self.failed: StartFailed | None = None  # the entrypoint gave up: run() exits 1
        self.trust = False  # postgres's POSTGRES_HOST_AUTH_METHOD=trust

    @property
    def state_path(self) -> str:
        """The file of the data directory that holds users, databases and data."""
        return f"{self.data_dir.rstrip('/')}/swarmlet-{self.flavour}.json"

    def configure(self) -> list[str]:
        """Read the credentials (raise StartFailed as the entrypoint fails); the lines to log."""
        raise NotImplementedError

    def existing_lines(self) -> list[str]:
        """What the entrypoint logs when the data directory already holds a database."""
        return []

    def set_password(self, user: str, password: str) -> None:
        """Keep ``user``'s password, hashed."""
        self.users[user] = password_hash(password)

    def password_ok(self, user: str, password: str) -> bool:
        """Does ``password`` match ``user``'s (any password in trust mode)?"""
        return user in self.users and (self.trust or _password_ok(self.users[user], password))

    def _load(self) -> bool:
        raw = self.env.read_file(self.state_path)
        if raw is None:
            return False
        try:
            state: dict[str, Any] = json.loads(raw)
        except ValueError:
            return False
        self.users = {str(k): str(v) for k, v in (state.get("users") or {}).items()}
        self.databases = {str(d) for d in state.get("databases") or []}
        self.data = {str(k): str(v) for k, v in (state.get("data") or {}).items()}
        self.trust = bool(state.get("trust"))
        return True

    def _save(self) -> None:
        state = {"users": self.users, "databases": sorted(self.databases), "data": self.data,
                 "trust": self.trust}  # fmt: skip
        try:
            self.env.write_file(self.state_path, json.dumps(state).encode())
        except FsError as exc:
            self.env.stderr(f"swarmlet: cannot write {self.state_path}: {exc}")

    def ready_lines(self) -> list[str]:
        """What the server logs once it accepts connections."""
        raise NotImplementedError

    async def start(self) -> None:
        """Configure, then bind the listener; a configuration error is logged and exits 1 in run()."""
        try:
            if self._load():
                lines = self.existing_lines()
            else:
                lines = self.configure()
                self._save()
            for line in lines:
                self.env.stdout(line)
        except StartFailed as exc:
            self.failed = exc
            return
        await self.listen(self.port, self._serve)
        for line in self.ready_lines():
            self.env.stdout(line)

    async def run(self) -> int:
        """Exit 1 if the entrypoint gave up, else serve until SIGTERM and exit 0."""
        if self.failed is not None:
            for line in self.failed.lines:
                self.env.stderr(line)
            return 1
        await self.terminated.wait()
        return 0

    def login(self, user: str, password: str, database: str) -> str:
        """``OK``, or the server's refusal."""
        raise NotImplementedError

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        logged_in = False
        try:
            while True:
                raw = await asyncio.wait_for(reader.readline(), 30)
                if not raw:
                    break
                words = raw.decode(errors="replace").split()
                verb = words[0].upper() if words else ""
                if verb == "QUIT":
                    break
                if verb == "PING":
                    answer = "PONG"
                elif verb == "LOGIN" and len(words) in (3, 4):
                    answer = self.login(words[1], words[2], words[3] if len(words) == 4 else "")
                    logged_in = answer == "OK"
                elif logged_in and verb in ("SET", "GET", "KEYS"):
                    answer = self._data_command(verb, words[1:])
                elif logged_in:
                    answer = "ERROR: swarmlet emulates no SQL"
                else:
                    answer = "ERROR: log in first: LOGIN user password [database]"
                writer.write(answer.encode() + b"\n")
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        with contextlib.suppress(Exception):
            writer.close()

    def _data_command(self, verb: str, args: list[str]) -> str:
        if verb == "SET" and len(args) >= 2:
            self.data[args[0]] = " ".join(args[1:])
            self._save()
            return "OK"
        if verb == "GET" and len(args) == 1:
            return self.data.get(args[0], "(nil)")
        if verb == "KEYS" and not args:
            return " ".join(sorted(self.data)) or "(empty)"
        return f"ERROR: usage: SET key value | GET key | KEYS (got {verb} {' '.join(args)})".rstrip()


_PG_ENTRYPOINT = "/usr/local/bin/docker-entrypoint.sh"


class PostgresProcess(DatabaseProcess):
    """postgres: POSTGRES_PASSWORD(_FILE), POSTGRES_USER(_FILE), POSTGRES_DB(_FILE), as the
    official image's entrypoint reads them; POSTGRES_HOST_AUTH_METHOD=trust needs no password."""

    port = 5432
    flavour = "postgres"
    data_dir = "/var/lib/postgresql/data"

    def existing_lines(self) -> list[str]:
        """The entrypoint finds a database and skips initdb (no password needed then)."""
        return ["",
                "PostgreSQL Database directory appears to contain a database; Skipping initialization",
                ""]  # fmt: skip

    def configure(self) -> list[str]:
        """The entrypoint's checks, then initdb's and the server's first lines."""
        both = "error: both {var} and {file} are set (but are exclusive)"
        password = file_env(self.env, "POSTGRES_PASSWORD", both_error=both, entrypoint=_PG_ENTRYPOINT)
        user = file_env(self.env, "POSTGRES_USER", "postgres", both_error=both, entrypoint=_PG_ENTRYPOINT)
        database = file_env(self.env, "POSTGRES_DB", user.value, both_error=both, entrypoint=_PG_ENTRYPOINT)
        self.trust = self.env.env.get("POSTGRES_HOST_AUTH_METHOD", "") == "trust"
        if not password.value and not self.trust:
            raise StartFailed(
                "Error: Database is uninitialized and superuser password is not specified.",
                "       You must specify POSTGRES_PASSWORD to a non-empty value for the",
                '       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".',
            )
        self.set_password(user.value, password.value)
        self.databases = {database.value, "postgres"}
        where = f"read from {password.source}" if password.source else "not set (trust)"
        return [
            f'The files belonging to this database system will be owned by user "{user.value}".',
            f'swarmlet: superuser "{user.value}", database "{database.value}"; password {where}',
            "PostgreSQL init process complete; ready for start up.",
        ]

    def ready_lines(self) -> list[str]:
        """postgres's own last start-up lines."""
        version = self.env.tag if self.env.tag[:1].isdigit() else "16.4"
        return [
            f"{_stamp()} UTC [1] LOG:  starting PostgreSQL {version} on x86_64-pc-linux-gnu (emulated)",
            f'{_stamp()} UTC [1] LOG:  listening on IPv4 address "0.0.0.0", port {self.port}',
            f"{_stamp()} UTC [1] LOG:  database system is ready to accept connections",
        ]

    def login(self, user: str, password: str, database: str) -> str:
        """Postgres's words for a wrong password and an unknown database."""
        if not self.password_ok(user, password):
            return f'FATAL:  password authentication failed for user "{user}"'
        if (database or user) not in self.databases:
            return f'FATAL:  database "{database or user}" does not exist'
        return "OK"


class MysqlProcess(DatabaseProcess):
    """mysql and mariadb: the root password from MYSQL_ROOT_PASSWORD(_FILE) (mariadb also reads
    MARIADB_ROOT_PASSWORD(_FILE)), or MYSQL_ALLOW_EMPTY_PASSWORD / MYSQL_RANDOM_ROOT_PASSWORD; an
    extra user from MYSQL_USER and MYSQL_PASSWORD(_FILE), with MYSQL_DATABASE."""

    port = 3306
    data_dir = "/var/lib/mysql"

    def __init__(self, env: TaskEnv, flavour: str) -> None:
        """``flavour`` is "mysql" or "mariadb" (their words differ)."""
        super().__init__(env)
        self.flavour = flavour

    def _setting(self, name: str) -> Setting:
        both = "[ERROR] [Entrypoint]: Both {var} and {file} are set (but are exclusive)"
        entrypoint = "/usr/local/bin/docker-entrypoint.sh"
        if self.flavour == "mariadb":
            alias = name.replace("MYSQL_", "MARIADB_", 1)
            found = file_env(self.env, alias, both_error=both, entrypoint=entrypoint)
            if found.source:
                return found
        return file_env(self.env, name, both_error=both, entrypoint=entrypoint)

    def configure(self) -> list[str]:
        """The entrypoint's checks and its log of what it set up."""
        root = self._setting("MYSQL_ROOT_PASSWORD")
        allow_empty = bool(self._setting("MYSQL_ALLOW_EMPTY_PASSWORD").value)
        random_root = bool(self._setting("MYSQL_RANDOM_ROOT_PASSWORD").value)
        if not root.value and not allow_empty and not random_root:
            prefix = "MARIADB" if self.flavour == "mariadb" else "MYSQL"
            empty = "MYSQL_ALLOW_EMPTY_PASSWORD" if prefix == "MYSQL" else "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD"
            raise StartFailed(
                "[ERROR] [Entrypoint]: Database is uninitialized and password option is not specified",
                "\tYou need to specify one of the following as an environment variable:",
                f"\t- {prefix}_ROOT_PASSWORD",
                f"\t- {empty}",
                f"\t- {prefix}_RANDOM_ROOT_PASSWORD",
            )
        root_password = root.value if root.value else ("" if allow_empty else "random")
        self.set_password("root", root_password)
        where = f"read from {root.source}" if root.source else ("empty" if allow_empty else "random")
        lines = [f"[Note] [Entrypoint]: Entrypoint script for {self.flavour} started.",
                 f'swarmlet: user "root"; password {where}']  # fmt: skip
        user, password = self._setting("MYSQL_USER"), self._setting("MYSQL_PASSWORD")
        database = self._setting("MYSQL_DATABASE")
        if database.value:
            self.databases.add(database.value)
            lines.append(f"[Note] [Entrypoint]: Creating database {database.value}")
        if user.value:
            self.set_password(user.value, password.value)
            lines.append(f"[Note] [Entrypoint]: Creating user {user.value}")
            lines.append(f'swarmlet: user "{user.value}"; password '
                         + (f"read from {password.source}" if password.source else "not set"))  # fmt: skip
        return lines

    def existing_lines(self) -> list[str]:
        """The entrypoint finds a database: no initialisation, no password needed."""
        return [f"[Note] [Entrypoint]: Entrypoint script for {self.flavour} started.",
                "swarmlet: the data directory holds a database; initialization skipped"]  # fmt: skip

    def ready_lines(self) -> list[str]:
        """The server's "ready for connections" line, in each flavour's words."""
        if self.flavour == "mariadb":
            version = self.env.tag if self.env.tag[:1].isdigit() else "11.4"
            return ["mariadbd: ready for connections.",
                    f"Version: '{version}-MariaDB'  socket: '/run/mysqld/mysqld.sock'  port: {self.port}  "
                    "mariadb.org binary distribution"]  # fmt: skip
        version = self.env.tag if self.env.tag[:1].isdigit() else "8.4"
        return [f"{_stamp()} 0 [System] [MY-010931] [Server] /usr/sbin/mysqld: ready for connections. "
                f"Version: '{version}'  socket: '/var/run/mysqld/mysqld.sock'  port: {self.port}  "
                "MySQL Community Server - GPL."]  # fmt: skip

    def login(self, user: str, password: str, database: str) -> str:
        """MySQL's words for a wrong password and an unknown database."""
        if not self.password_ok(user, password):
            return f"ERROR 1045 (28000): Access denied for user '{user}'@'localhost' (using password: YES)"
        if database and database not in self.databases:
            return f"ERROR 1049 (42000): Unknown database '{database}'"
        return "OK"


def _mongo_log(severity: str, component: str, log_id: int, ctx: str, msg: str, **attr: Any) -> str:
    """One line of mongod's structured (JSON) log."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime())
    line: dict[str, Any] = {"t": {"$date": now}, "s": severity, "c": component, "id": log_id, "ctx": ctx,
                            "msg": msg}  # fmt: skip
    if attr:
        line["attr"] = attr
    return json.dumps(line, separators=(",", ":"))


class MongoProcess(DatabaseProcess):
    """mongo: MONGO_INITDB_ROOT_USERNAME(_FILE) and MONGO_INITDB_ROOT_PASSWORD(_FILE), as the
    official entrypoint reads them. Both: the root user is created in the ``admin`` database at
    the first start (and access control is on); one without the other: the entrypoint's error,
    exit 1; neither: mongod runs without access control, with its startup warning, as the real
    image does. MONGO_INITDB_DATABASE is kept as a database name."""

    port = 27017
    flavour = "mongo"
    data_dir = "/data/db"

    def configure(self) -> list[str]:
        """The entrypoint's checks and the root user's creation."""
        both = "error: both {var} and {file} are set (but are exclusive)"
        entrypoint = "/usr/local/bin/docker-entrypoint.sh"
        user = file_env(self.env, "MONGO_INITDB_ROOT_USERNAME", both_error=both, entrypoint=entrypoint)
        password = file_env(self.env, "MONGO_INITDB_ROOT_PASSWORD", both_error=both, entrypoint=entrypoint)
        database = file_env(self.env, "MONGO_INITDB_DATABASE", both_error=both, entrypoint=entrypoint)
        if bool(user.value) != bool(password.value):
            raise StartFailed(
                "",
                "error: missing 'MONGO_INITDB_ROOT_USERNAME' or 'MONGO_INITDB_ROOT_PASSWORD'",
                "       both must be specified for a user to be created",
                "",
            )
        self.databases = {"admin", "local", "config", database.value or "test"}
        if not user.value:
            self.trust = True
            return [_mongo_log("W", "CONTROL", 22120, "initandlisten",
                               "Access control is not enabled for the database. Read and write access "
                               "to data and configuration is unrestricted",
                               tags=["startupWarnings"])]  # fmt: skip
        self.set_password(user.value, password.value)
        roles = '[ { "role" : "root", "db" : "admin" } ]'
        return [
            f'swarmlet: root user "{user.value}"; username read from {user.source}, '
            f"password read from {password.source}",
            f'Successfully added user: {{ "user" : "{user.value}", "roles" : {roles} }}',
            "MongoDB init process complete; ready for start up.",
        ]

    def existing_lines(self) -> list[str]:
        """The data directory holds a database: the entrypoint creates no user."""
        return [_mongo_log("I", "STORAGE", 22315, "initandlisten", "Opening WiredTiger",
                           config="existing data directory /data/db")]  # fmt: skip

    def ready_lines(self) -> list[str]:
        """mongod's "Waiting for connections"."""
        return [_mongo_log("I", "NETWORK", 23016, "listener", "Waiting for connections", port=self.port,
                           ssl="off")]  # fmt: skip

    def login(self, user: str, password: str, database: str) -> str:
        """mongosh's words for a failed authentication."""
        if not self.password_ok(user, password) and not (self.trust and not self.users):
            return "MongoServerError: Authentication failed."
        return "OK"


@dataclass(frozen=True)
class DatabaseImage:
    """postgres, mysql, mariadb or mongo."""

    names: tuple[str, ...]
    flavour: str
    size: int

    def describe(self, repository: str, tag: str) -> ImageInfo:
        """The image as ``docker image ls`` lists it."""
        return image_info(repository, tag, self.size)

    def process(self, env: TaskEnv) -> Process:
        """The server for one task."""
        if self.flavour == "postgres":
            return PostgresProcess(env)
        if self.flavour == "mongo":
            return MongoProcess(env)
        return MysqlProcess(env, self.flavour)


POSTGRES = DatabaseImage(("postgres",), "postgres", 432_000_000)
MYSQL = DatabaseImage(("mysql",), "mysql", 586_000_000)
MARIADB = DatabaseImage(("mariadb",), "mariadb", 407_000_000)
MONGO = DatabaseImage(("mongo",), "mongo", 855_000_000)
