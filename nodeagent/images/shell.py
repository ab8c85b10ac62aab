"""busybox and alpine: their commands, and a small ``sh -c`` with a few builtins.

Enough for the commands Swarm tutorials give these images: ``sleep 3600``, ``echo hi``,
``exit 3`` (through ``sh -c``), ``cat /run/secrets/x``, lists joined by ``;``, ``&&`` and
``||``, ``exec``, ``true``/``false``, ``$VAR`` expansion, output redirected to a file (``>``,
``>>``) and ``wc -l``, ``touch``, ``mkdir -p``, ``hostname``: enough for a task to count its
starts in a volume, ``sh -c 'echo start >> /data/starts; wc -l /data/starts; sleep 3600'``. A
command this shell does not know fails as a missing one does in busybox: "sh: NAME: not
found", exit 127. More commands (the healthcheck's curl, wget and redis-cli) are added by
whoever runs the shell through ``extra``; a task's own command gets ``wget`` and ``nslookup``
over its overlays (:mod:`.netcmds`).

As PID 1 of a container, ``sleep`` ignores SIGTERM (the kernel gives PID 1 no default handler),
so such a task is killed at the end of its stop grace period (exit 137), as in Docker.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from nodeagent.images.base import FsError, ImageInfo, Process, TaskEnv, image_info
from nodeagent.images.netcmds import NET_COMMANDS

__all__ = ["ALPINE", "BUSYBOX", "Command", "ShellImage", "ShellProcess", "run_argv", "run_script"]

Command = Callable[[list[str], TaskEnv], Awaitable[int]]
"""An external command the shell may run: (argv, env) -> exit code."""

NEWLINE = b"\n"
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def _expand(word: str, env: TaskEnv, last: int) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name == "?":
            return str(last)
        return env.env.get(name, "")

    return _VAR.sub(sub, word.replace("$?", str(last)))


def _split_list(script: str) -> list[tuple[str, str]]:
    """Split a command list into (separator before it, command): ";" "&&" "||" (quotes respected)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    out: list[tuple[str, str]] = []
    sep, words = ";", list[str]()
    for token in lexer:
        if token in (";", "&&", "||", "\n"):
            if words:
                out.append((sep, shlex.join(words)))
            sep, words = token, []
        else:
            words.append(token)
    if words:
        out.append((sep, shlex.join(words)))
    return out


@dataclass
class _Shell:
    env: TaskEnv
    extra: Mapping[str, Command] = field(default_factory=dict)
    stdout: Callable[[str], None] | None = None
    stopped: asyncio.Event | None = None

    def out(self, line: str) -> None:
        (self.stdout or self.env.stdout)(line)

    async def argv(self, argv: list[str], pid1: bool) -> int:
        """Run one simple command; raise _Exit for ``exit``."""
        if not argv:
            return 0
        name, rest = argv[0].rsplit("/", 1)[-1], argv[1:]
        if name == "exec":
            return await self.argv(rest, pid1)
        if name == "exit":
            raise _Exit(int(rest[0]) & 0xFF if rest and rest[0].lstrip("-").isdigit() else 0)
        if name == "echo":
            newline = not (rest and rest[0] == "-n")
            self.out(" ".join(rest[1:] if not newline else rest))
            return 0
        if name in ("true", ":"):
            return 0
        if name == "false":
            return 1
        if name == "sleep":
            return await self._sleep(rest, pid1)
        if name == "cat":
            code = 0
            for path in rest:
                content = self.env.read_file(path)
                if content is None:
                    self.env.stderr(f"cat: can't open '{path}': No such file or directory")
                    code = 1
                else:
                    for line in content.decode(errors="replace").splitlines():
                        self.out(line)
            return code
        if name == "wc":
            return self._wc(rest)
        if name == "touch":
            return self._touch(rest)
        if name == "mkdir":
            return 0  # directories exist as soon as a file is written under them
        if name == "hostname":
            self.out(self.env.hostname)
            return 0
        if name in ("sh", "ash", "bash") and len(rest) >= 2 and rest[0] == "-c":
            return await self.script(rest[1], pid1)
        if name in self.extra:
            return await self.extra[name](argv, self.env)
        self.env.stderr(f"sh: {name}: not found")
        return 127

    def _wc(self, rest: list[str]) -> int:
        flags = [w for w in rest if w.startswith("-")]
        paths = [w for w in rest if not w.startswith("-")]
        if flags not in ([], ["-l"]) or not paths:
            self.env.stderr("wc: swarmlet's wc counts lines of files: wc -l FILE...")
            return 1
        code = 0
        for path in paths:
            content = self.env.read_file(path)
            if content is None:
                self.env.stderr(f"wc: {path}: No such file or directory")
                code = 1
                continue
            self.out(f"{content.count(NEWLINE)} {path}")
        return code

    def _touch(self, rest: list[str]) -> int:
        for path in rest:
            try:
                self.env.write_file(path, b"", append=True)
            except FsError as exc:
                self.env.stderr(f"touch: {path}: {exc}")
                return 1
        return 0

    async def _sleep(self, rest: list[str], pid1: bool) -> int:
        seconds = 0.0
        for word in rest:
            if word == "infinity":
                seconds = float("inf")
                break
            unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(word[-1:], 0)
            try:
                seconds += float(word[:-1]) * unit if unit else float(word)
            except ValueError:
                self.env.stderr(f"sleep: invalid number '{word}'")
                return 1
        if seconds == float("inf"):
            await asyncio.Event().wait()
        # PID 1 ignores SIGTERM: only the kill at the end of the grace period ends this sleep.
        await asyncio.sleep(seconds)
        return 0

    async def script(self, script: str, pid1: bool) -> int:
        last = 0
        for sep, command in _split_list(script):
            if (sep == "&&" and last != 0) or (sep == "||" and last == 0):
                continue
            words = [_expand(w, self.env, last) for w in shlex.split(command)]
            words, target = _redirection(words)
            if target is None:
                last = await self.argv(words, pid1)
                continue
            path, append = target
            lines: list[str] = []
            saved, self.stdout = self.stdout, lines.append
            try:
                last = await self.argv(words, pid1)
            finally:
                self.stdout = saved
            try:
                self.env.write_file(path, "".join(f"{line}\n" for line in lines).encode(), append=append)
            except FsError as exc:
                self.env.stderr(f"sh: can't create {path}: {exc}")
                last = 1
        return last


def _redirection(words: list[str]) -> tuple[list[str], tuple[str, bool] | None]:
    """Split ``> FILE`` / ``>> FILE`` (or ``>FILE``) off a command: (words, (path, append))."""
    out: list[str] = []
    target: tuple[str, bool] | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith(">"):
            append = word.startswith(">>")
            path = word[2:] if append else word[1:]
            if not path and i + 1 < len(words):
                i += 1
                path = words[i]
            target = (path, append)
        else:
            out.append(word)
        i += 1
    return out, target


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def run_argv(argv: list[str], env: TaskEnv, *, extra: Mapping[str, Command] | None = None,
                   stdout: Callable[[str], None] | None = None, pid1: bool = False) -> int:
    """Run a command vector (``sh -c ...`` included) the way busybox would; returns the exit code."""
    shell = _Shell(env, extra or {}, stdout)
    try:
        return await shell.argv(list(argv), pid1)
    except _Exit as exc:
        return exc.code


async def run_script(script: str, env: TaskEnv, *, extra: Mapping[str, Command] | None = None,
                     stdout: Callable[[str], None] | None = None) -> int:
    """Run ``sh -c SCRIPT``; returns the exit code."""
    return await run_argv(["sh", "-c", script], env, extra=extra, stdout=stdout)


class ShellProcess(Process):
    """A busybox/alpine container's main process: its command, or ``sh`` (which exits at once)."""

    async def run(self) -> int:
        """Run Command + Args (as Docker joins entrypoint and cmd); the image's default is ``sh``."""
        argv = [*self.env.command, *self.env.args] or ["sh"]
        if argv == ["sh"]:
            return 0  # no terminal attached: sh reads end of input and exits 0
        return await run_argv(argv, self.env, extra=NET_COMMANDS, pid1=True)


@dataclass(frozen=True)
class ShellImage:
    """busybox or alpine."""

    names: tuple[str, ...]
    size: int

    def describe(self, repository: str, tag: str) -> ImageInfo:
        """The image as ``docker image ls`` lists it."""
        return image_info(repository, tag, self.size)

    def process(self, env: TaskEnv) -> Process:
        """The task's command as the main process."""
        return ShellProcess(env)


BUSYBOX = ShellImage(("busybox",), 4_260_000)
ALPINE = ShellImage(("alpine",), 7_800_000)
