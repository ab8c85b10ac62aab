"""Databases: postgres, mysql and mariadb, as far as their credentials and readiness go.

What is emulated is what Swarm tutorials exercise with these images: the official entrypoints'
``*_FILE`` convention (a variable ``X_FILE`` names a file, usually a secret at
``/run/secrets/NAME``, whose content is ``X``; setting both is the entrypoint's error, a missing
file its bash error), their refusal to start without a password, their start-up log ending in
the line people wait for ("database system is ready to accept connections", "ready for
connections"), and a listener on the image's port (5432, 3306). A line tells which user was set
up and where the password came from, never the password.

No SQL is emulated. The listener speaks a tiny line protocol, enough to check credentials from
a test or a healthcheck: ``LOGIN user password [database]`` answers ``OK`` or the server's own
FATAL/ERROR words, ``PING`` answers ``PONG``, ``QUIT`` closes; anything else before a login is
refused as the server would refuse an unauthenticated client, after it ``ERROR: no SQL here``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from nodeagent.images.base import ImageInfo, ListeningProcess, Process, TaskEnv, image_info

__all__ = ["MARIADB", "MYSQL", "POSTGRES", "DatabaseImage", "DatabaseProcess", "StartFailed", "file_env"]


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
        return Setting(content.decode(errors="replace"), f"the file {path} ({name}_FILE)")
    if direct:
        return Setting(direct, name)
    return Setting(default, "")


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


class DatabaseProcess(ListeningProcess):
    """A database server's main process: configure from the environment, listen, run until SIGTERM."""

    port = 0  # the container port
    flavour = ""

    def __init__(self, env: TaskEnv) -> None:
        """Nothing is read until ``start``."""
        super().__init__(env)
        self.users: dict[str, str] = {}  # user -> password
        self.databases: set[str] = set()
        self.failed: StartFailed | None = None  # the entrypoint gave up: run() exits 1
        self.trust = False  # postgres's POSTGRES_HOST_AUTH_METHOD=trust

    def configure(self) -> list[str]:
        """Read the credentials (raise StartFailed as the entrypoint fails); the lines to log."""
        raise NotImplementedError

    def ready_lines(self) -> list[str]:
        """What the server logs once it accepts connections."""
        raise NotImplementedError

    async def start(self) -> None:
        """Configure, then bind the listener; a configuration error is logged and exits 1 in run()."""
        try:
            for line in self.configure():
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


_PG_ENTRYPOINT = "/usr/local/bin/docker-entrypoint.sh"


class PostgresProcess(DatabaseProcess):
    """postgres: POSTGRES_PASSWORD(_FILE), POSTGRES_USER(_FILE), POSTGRES_DB(_FILE), as the
    official image's entrypoint reads them; POSTGRES_HOST_AUTH_METHOD=trust needs no password."""

    port = 5432
    flavour = "postgres"

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
        self.users = {user.value: password.value}
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
        if user not in self.users or (not self.trust and self.users[user] != password):
            return f'FATAL:  password authentication failed for user "{user}"'
        if (database or user) not in self.databases:
            return f'FATAL:  database "{database or user}" does not exist'
        return "OK"


class MysqlProcess(DatabaseProcess):
    """mysql and mariadb: the root password from MYSQL_ROOT_PASSWORD(_FILE) (mariadb also reads
    MARIADB_ROOT_PASSWORD(_FILE)), or MYSQL_ALLOW_EMPTY_PASSWORD / MYSQL_RANDOM_ROOT_PASSWORD; an
    extra user from MYSQL_USER and MYSQL_PASSWORD(_FILE), with MYSQL_DATABASE."""

    port = 3306

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
        self.users = {"root": root_password}
        where = f"read from {root.source}" if root.source else ("empty" if allow_empty else "random")
        lines = [f"[Note] [Entrypoint]: Entrypoint script for {self.flavour} started.",
                 f'swarmlet: user "root"; password {where}']  # fmt: skip
        user, password = self._setting("MYSQL_USER"), self._setting("MYSQL_PASSWORD")
        database = self._setting("MYSQL_DATABASE")
        if database.value:
            self.databases.add(database.value)
            lines.append(f"[Note] [Entrypoint]: Creating database {database.value}")
        if user.value:
            self.users[user.value] = password.value
            lines.append(f"[Note] [Entrypoint]: Creating user {user.value}")
            lines.append(f'swarmlet: user "{user.value}"; password '
                         + (f"read from {password.source}" if password.source else "not set"))  # fmt: skip
        return lines

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
        if self.users.get(user) != password:
            return f"ERROR 1045 (28000): Access denied for user '{user}'@'localhost' (using password: YES)"
        if database and database not in self.databases:
            return f"ERROR 1049 (42000): Unknown database '{database}'"
        return "OK"


@dataclass(frozen=True)
class DatabaseImage:
    """postgres, mysql or mariadb."""

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
        return MysqlProcess(env, self.flavour)


POSTGRES = DatabaseImage(("postgres",), "postgres", 432_000_000)
MYSQL = DatabaseImage(("mysql",), "mysql", 586_000_000)
MARIADB = DatabaseImage(("mariadb",), "mariadb", 407_000_000)
