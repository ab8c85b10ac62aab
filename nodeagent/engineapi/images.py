"""What a node says about images: ``/distribution/{name}/json``, ``/images/json``, ``/images/{name}/json``.

swarmlet runs no container engine: the emulated runtime knows a fixed set of images by reference
(``nginx:1.25``). The docker CLI asks ``GET /distribution/IMAGE/json`` before ``service create``
and ``service update --image`` to pin the image to a digest; when that fails it prints "image X
could not be accessed on a registry to record its digest". A real Swarm with no registry prints
that for every image. Here an image the runtime knows is answered with a digest (derived from its
reference, stable across nodes and runs), so no warning is printed for it; an image it does not
know gets Docker's "manifest unknown" and the CLI warns, with reason: no node can run it.

The list comes from an :class:`ImageCatalog` (the emulated runtime's, when it provides one);
:data:`BUILTIN_IMAGES` is the fallback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web

from nodeagent.engineapi.errors import ApiError, json_response

__all__ = [
    "BUILTIN_IMAGES",
    "BuiltinImages",
    "ImageCatalog",
    "ImageRoutes",
    "image_digest",
    "normalize_reference",
]

BUILTIN_IMAGES: tuple[str, ...] = (
    "nginx:latest", "nginx:1.25", "nginx:1.27", "nginx:alpine",
    "httpd:latest", "httpd:2.4",
    "traefik/whoami:latest", "traefik/whoami:v1.10",
    "busybox:latest", "busybox:1.36",
    "alpine:latest", "alpine:3.19", "alpine:3.20",
    "redis:latest", "redis:7", "redis:7-alpine",
)  # fmt: skip
"""The images a node knows when the emulated runtime gives no list of its own."""

_MANIFEST_INDEX = "application/vnd.oci.image.index.v1+json"


class ImageCatalog(Protocol):
    """The emulated runtime's images, by normalised reference (``nginx:1.25``)."""

    def known_images(self) -> Iterable[str]:
        """The image references ``GET /images/json`` lists, as an engine lists what it has pulled."""
        ...

    def runs(self, reference: str) -> bool:
        """Whether the runtime emulates this image itself (any tag of a repository it knows)."""
        ...


class BuiltinImages:
    """An :class:`ImageCatalog` of :data:`BUILTIN_IMAGES`."""

    def known_images(self) -> Iterable[str]:
        """The built-in list."""
        return BUILTIN_IMAGES

    def runs(self, reference: str) -> bool:
        """Whether ``reference`` is in the built-in list."""
        return normalize_reference(reference) in {normalize_reference(r) for r in BUILTIN_IMAGES}


def normalize_reference(reference: str) -> str:
    """``docker.io/library/nginx`` -> ``nginx:latest``: the familiar name with a tag, no digest."""
    name = reference.split("@", 1)[0]
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        name += ":latest"
    return name


def image_digest(reference: str) -> str:
    """A stable digest for an emulated image: every node and every run agrees on it."""
    text = "swarmlet emulated image " + normalize_reference(reference)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _repository(reference: str) -> str:
    name = normalize_reference(reference)
    return name.rsplit(":", 1)[0]


class ImageRoutes:
    """The image routes of one node, answered from an :class:`ImageCatalog`."""

    def __init__(self, catalog: ImageCatalog, architecture: str) -> None:
        """``architecture`` is the node's, as /version reports it."""
        self.catalog = catalog
        self.architecture = architecture

    def _known(self) -> list[str]:
        return sorted({normalize_reference(r) for r in self.catalog.known_images()})

    def _find(self, reference: str) -> str | None:
        wanted = normalize_reference(reference)
        return wanted if self.catalog.runs(wanted) else None

    async def distribution(self, request: web.Request) -> web.StreamResponse:
        """``GET /distribution/{name}/json``: the descriptor the CLI pins the image with."""
        raw = request.match_info["name"]
        found = self._find(raw)
        if found is None:
            name = normalize_reference(raw)
            raise ApiError.not_found(f"manifest for {name} not found: manifest unknown: manifest unknown")
        body = {
            "Descriptor": {"mediaType": _MANIFEST_INDEX, "digest": image_digest(found), "size": 1024},
            # Emulated images run on every node's platform: listing none keeps the CLI from
            # adding Placement.Platforms that the scheduler would have to match.
            "Platforms": [],
        }
        return json_response(body)

    def _summary(self, reference: str) -> dict[str, Any]:
        digest = image_digest(reference)
        return {
            "Containers": -1,
            "Created": 0,
            "Id": digest,
            "Labels": None,
            "ParentId": "",
            "RepoDigests": [f"{_repository(reference)}@{digest}"],
            "RepoTags": [reference],
            "SharedSize": -1,
            "Size": 0,
        }

    async def list(self, request: web.Request) -> web.StreamResponse:
        """``GET /images/json``: every emulated image, one summary each."""
        return json_response([self._summary(r) for r in self._known()])

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        """``GET /images/{name}/json``: Docker's ImageInspect shape, what the runtime knows of it."""
        raw = request.match_info["name"]
        found = self._find(raw)
        if found is None:
            name = normalize_reference(raw)
            raise ApiError.not_found(f"no such image: {raw}: No such image: {name}")
        digest = image_digest(found)
        body = {
            "Id": digest,
            "RepoTags": [found],
            "RepoDigests": [f"{_repository(found)}@{digest}"],
            "Parent": "",
            "Comment": "",
            "Created": "1970-01-01T00:00:00Z",
            "Config": {},
            "Architecture": self.architecture,
            "Os": "linux",
            "Size": 0,
            "RootFS": {"Type": "layers"},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        }
        return json_response(body)
