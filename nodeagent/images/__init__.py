"""Emulated images: what a task's container runs, found by the image's repository name.

Images register in the entry point group ``swarmlet.images`` (pyproject.toml); each entry point
names an object with ``names`` (the repositories it emulates), ``describe(repository, tag)`` and
``process(env)`` (see :class:`nodeagent.images.base.ImageProvider`). A user's package adds its own
images the same way, with no change here. The built-in ones are also known without the package
metadata (a source tree run with ``PYTHONPATH``), so a node always has them; an installed entry
point that claims the same name wins, so a user can replace a built-in.

Resolution: the reference is normalised as Docker does (``docker.io/library/nginx:1.25@sha256:..``
-> repository ``nginx``, tag ``1.25``); an image that claims the repository runs it; otherwise the
image that claims ``*`` does (a web server): swarmlet has no registry, so every image "exists".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nodeagent.images.base import ImageInfo, ImageProvider, Process, TaskEnv, WaitingProcess
from nodeagent.images.database import MARIADB, MONGO, MYSQL, POSTGRES
from nodeagent.images.redis import REDIS
from nodeagent.images.shell import ALPINE, BUSYBOX
from nodeagent.images.web import DEFAULT, HTTPD, NGINX, WHOAMI

__all__ = [
    "ENTRY_POINT_GROUP",
    "ImageInfo",
    "ImageProvider",
    "Process",
    "RuntimeImages",
    "TaskEnv",
    "WaitingProcess",
    "known_images",
    "parse_reference",
    "providers",
    "resolve",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "swarmlet.images"
"""The entry point group images register under."""

BUILTIN: dict[str, Any] = {
    "nginx": NGINX, "httpd": HTTPD, "whoami": WHOAMI, "web": DEFAULT,
    "busybox": BUSYBOX, "alpine": ALPINE, "redis": REDIS,
    "postgres": POSTGRES, "mysql": MYSQL, "mariadb": MARIADB, "mongo": MONGO,
}  # fmt: skip
"""The images every node has: the same objects pyproject registers under ``swarmlet.images``."""

_cache: dict[str, ImageProvider] | None = None


def providers(*, reload: bool = False) -> dict[str, ImageProvider]:
    """Repository name (or "*") -> the image that emulates it: built-ins, then entry points."""
    global _cache
    if _cache is not None and not reload:
        return _cache
    found: dict[str, ImageProvider] = {}
    for provider in BUILTIN.values():
        for name in provider.names:
            found[name] = provider
    # Imported at the first look-up (a task's start, GET /images/json), not with the module: the
    # package metadata costs 0.06 s of CPU to import, which a node's start need not pay.
    from importlib import metadata

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            provider = ep.load()
        except Exception:  # a broken third-party image must not stop the node
            log.exception("image entry point %s (%s) does not load", ep.name, ep.value)
            continue
        for name in getattr(provider, "names", ()):
            found[str(name)] = provider
    _cache = found
    return found


def parse_reference(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference, as Docker normalises it; the tag defaults to latest."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
    else:
        tag = "latest"
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]  # a registry host
    if len(parts) > 1 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts).lower(), tag or "latest"


def resolve(image: str) -> tuple[ImageProvider, str, str]:
    """The image that runs ``image``, with the repository and tag it was asked as."""
    repository, tag = parse_reference(image)
    table = providers()
    provider = table.get(repository) or table.get(repository.rsplit("/", 1)[-1]) or table["*"]
    return provider, repository, tag


def known_images(used: list[str] | None = None) -> list[ImageInfo]:
    """What the node's ``GET /images/json`` lists: every registered image at tag latest, plus
    each reference in ``used`` (the images of tasks this node ran) at its own tag."""
    seen: dict[tuple[str, str], ImageInfo] = {}
    for name, provider in sorted(providers().items()):
        if name != "*":
            seen[(name, "latest")] = provider.describe(name, "latest")
    for ref in used or []:
        provider, repository, tag = resolve(ref)
        seen.setdefault((repository, tag), provider.describe(repository, tag))
    return [seen[k] for k in sorted(seen)]


class RuntimeImages:
    """The node's image catalog for the Engine API: what the emulated runtime really runs.

    A repository with an image of its own (nginx, busybox, redis, an entry point's...) is known
    at every tag, as if each were pulled; any other reference still runs (as the generic web
    server) but is not "known", so ``docker service create`` warns that it could not be found,
    which tells the user their image is being stood in for.
    """

    def __init__(self, used: Callable[[], list[str]] | None = None) -> None:
        """``used`` lists the images of tasks this node ran, so /images/json shows them too."""
        self._used = used

    def known_images(self) -> list[str]:
        """Every registered image at tag latest, plus the tags tasks here ran."""
        used = self._used() if self._used is not None else None
        return [f"{info.name}:{info.tag}" for info in known_images(used)]

    def runs(self, reference: str) -> bool:
        """Whether a registered image (not the generic stand-in) emulates ``reference``."""
        repository, _tag = parse_reference(reference)
        table = providers()
        return repository in table or repository.rsplit("/", 1)[-1] in table

