"""Images without a registry: a Debian base image from mmdebstrap, the node image on top, and
Prometheus from Debian's package.

Nothing is ever pulled. The base image is a root file system that mmdebstrap builds from Debian
packages into a tarball, loaded with ``docker import``; it is tagged with a hash of its inputs
(suite, mirrors, package list, recipe version), so it is rebuilt only when one of them changes.
The node image is built from deploy/Dockerfile.node with the classic builder (this engine has no
BuildKit) on top of it: the project's wheel is built on the host from the current tree and its
runtime dependencies are downloaded on the host (``docker build`` steps cannot verify TLS to
PyPI), then pip installs them offline (``--no-index``), for the image's Python and glibc, into a
folder that the build copies in as one layer. The node image is tagged with a hash of
the tree's sources, the Dockerfile, the dependency list and the base image, and also as
``swarmlet/node:latest``, which compose.yml names. The Prometheus image (compose.yml's
``prometheus`` service) is made like the base image, from Debian's ``prometheus`` package, and
tagged with the hash of its own inputs and ``swarmlet/prometheus:latest``.

Run ``python -m deploy.images`` to build what is missing and print the times.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from typing import Any

from deploy import pythoncopy
from deploy.hostengine import HostEngineError, host_engine, inspect_object
from deploy.pythoncopy import NODE_KEY_LABEL, python_volume

__all__ = [
    "BASE_PACKAGES",
    "BASE_REPO",
    "NGINX_PACKAGES",
    "NGINX_REPO",
    "NODE_IMAGE",
    "NODE_REPO",
    "PROMETHEUS_IMAGE",
    "PROMETHEUS_PACKAGES",
    "PROMETHEUS_REPO",
    "BuildError",
    "BuiltImage",
    "base_image_key",
    "ensure_base_image",
    "ensure_images",
    "ensure_nginx_image",
    "ensure_node_image",
    "ensure_prometheus_image",
    "image_exists",
    "inspect_image",
    "nginx_image_key",
    "node_image_key",
    "prometheus_image_key",
    "repo_root",
    "tag_image",
]

BASE_REPO = "swarmlet/base"
"""Repository name of the base image; the tag is the hash of its inputs."""
NODE_REPO = "swarmlet/node"
"""Repository name of the node image; tagged with its input hash and ``latest``."""
NODE_IMAGE = f"{NODE_REPO}:latest"
"""The tag compose.yml uses."""

SUITE = "bookworm"
"""Debian suite of the base image: its python3 is 3.11, as the host's wheels are built for."""
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
"""Package sources for mmdebstrap."""
BASE_PACKAGES = ("python3", "libstdc++6", "ca-certificates", "iproute2", "iptables", "procps")
"""Added to mmdebstrap's essential set: grpcio needs libstdc++6; iproute2, iptables and procps
are there for looking inside a node (``ip addr``, ``ps``)."""
# Documentation, manual pages and translations are left out: nobody reads them in a node.
_DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
)
# mmdebstrap's own merged-/usr set-up: without it, bookworm's usrmerge package drags in perl (50 MB).
_HOOKS = ("/usr/share/mmdebstrap/hooks/merged-usr",)
# Bump when the recipe changes in a way the other inputs do not show.
_BASE_RECIPE_VERSION = 1
_HASH_CHARS = 12


class BuildError(RuntimeError):
    """An image could not be built; the message says which step failed and where its log is."""


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """An image that is now present, and whether this call had to build it."""

    tag: str
    """The image's content-keyed tag."""
    built: bool
    """False when an image with the same inputs was already there and was reused."""
    seconds: float
    """Wall time this call spent on the image (near zero when reused)."""
    size_bytes: int
    """The image's size as ``docker image inspect`` reports it."""


Progress = Callable[[str], None]


def repo_root() -> pathlib.Path:
    """The source tree this module was loaded from (compose.yml and pyproject.toml sit there)."""
    return pathlib.Path(__file__).resolve().parents[1]


def cache_dir() -> pathlib.Path:
    """Where tarballs, wheels and build logs are kept (git-ignored)."""
    path = pathlib.Path(os.environ.get("SWARMLET_CACHE", repo_root() / ".cache" / "images"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:_HASH_CHARS]


def run_step(cmd: list[str], log: pathlib.Path, step: str, env: dict[str, str] | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
        except FileNotFoundError as e:
            raise BuildError(f"{step}: {e.filename} is not installed") from None
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BuildError(f"{step} failed (exit {proc.returncode}); log: {log}\n" + "\n".join(tail))


def inspect_image(tag: str) -> dict[str, Any] | None:
    """``docker image inspect TAG``: the image's JSON (Id, Size, ...), None when there is none
    (deploy.hostengine.inspect_object: over the engine's socket where it can be)."""
    try:
        return inspect_object("image", tag)
    except HostEngineError as e:
        raise BuildError(f"docker image inspect {tag}: {e}") from None


def tag_image(source: str, target: str) -> None:
    """``docker tag SOURCE TARGET`` (over the engine's socket where it can be)."""
    engine = host_engine()
    if engine is not None:
        try:
            engine.tag(source, target)
        except HostEngineError as e:
            raise BuildError(f"docker tag {source} {target}: {e}") from None
        return
    subprocess.run(["docker", "tag", source, target], capture_output=True, check=True)


def image_exists(tag: str) -> bool:
    """Whether the local engine has an image with this tag."""
    return inspect_image(tag) is not None


def _image_size(tag: str) -> int:
    return int((inspect_image(tag) or {}).get("Size") or 0)


def _point_latest(tag: str, latest: str, image: dict[str, Any] | None = None) -> None:
    """Tag ``tag`` as ``latest`` unless ``latest`` already names the same image (``image`` is
    ``tag``'s inspect, when the caller has it)."""
    image = image or inspect_image(tag) or {}
    current = inspect_image(latest)
    if current is None or not image.get("Id") or current.get("Id") != image.get("Id"):
        tag_image(tag, latest)


def _recipe_key(version: int, packages: tuple[str, ...], dpkg: tuple[str, ...],
                changes: tuple[str, ...] | None = None) -> str:
    """A Debian image's tag: a hash of its recipe (suite, mirrors, packages, dpkg options, hooks,
    and the ``docker import`` changes where they are part of the recipe)."""
    recipe: dict[str, object] = {"version": version, "suite": SUITE, "mirrors": MIRRORS,
                                 "packages": packages, "dpkg": dpkg, "hooks": _HOOKS}
    if changes is not None:
        recipe["changes"] = changes
    return _digest([json.dumps(recipe, sort_keys=True).encode()])


def base_image_key() -> str:
    """The base image's tag: a hash of everything that goes into it."""
    return _recipe_key(_BASE_RECIPE_VERSION, BASE_PACKAGES, _DPKG_EXCLUDES)


def _ensure_mmdebstrap(log: pathlib.Path, progress: Progress) -> None:
    if shutil.which("mmdebstrap"):
        return
    if os.geteuid() != 0:
        raise BuildError("mmdebstrap is missing: install it (apt-get install mmdebstrap) or run as root")
    progress("installing mmdebstrap (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_step(["apt-get", "update"], log, "apt-get update", env)
    run_step(["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"],
         log, "installing mmdebstrap", env)


def _debootstrap_image(tag: str, name: str, packages: tuple[str, ...], dpkg: tuple[str, ...],
                       changes: Iterable[str], say: Progress) -> pathlib.Path:
    """Build ``tag`` as a root file system that mmdebstrap makes from Debian ``packages`` (on top
    of the essential set), loaded with ``docker import`` and its ``changes``; returns the log.

    ``name`` names the image in the log file, the temporary folder and the steps' messages."""
    log = cache_dir() / f"{name}-build.log"
    log.write_text("")
    _ensure_mmdebstrap(log, say)
    label, contents = ("", "") if name == "base" else (f" ({name})", f" with {', '.join(packages)}")
    with tempfile.TemporaryDirectory(prefix=f"swarmlet-{name}-", dir=cache_dir()) as tmp:
        tarball = pathlib.Path(tmp) / "rootfs.tar"
        say(f"debootstrapping Debian {SUITE}{contents} (mmdebstrap)")
        cmd = ["mmdebstrap", "--variant=essential", "--include=" + ",".join(packages)]
        cmd += [f"--dpkgopt={opt}" for opt in dpkg]
        cmd += [f"--hook-dir={hook}" for hook in _HOOKS]
        cmd += ["--quiet", SUITE, str(tarball), *MIRRORS]
        run_step(cmd, log, f"mmdebstrap{label}")
        say(f"importing the root file system{contents} (docker import)")
        cmd = ["docker", "import"]
        for change in changes:
            cmd += ["--change", change]
        run_step([*cmd, str(tarball), tag], log, f"docker import{label}")
    return log


def ensure_base_image(progress: Progress | None = None) -> BuiltImage:
    """Build the base image unless one with the same inputs exists."""
    say = progress or (lambda _msg: None)
    key = base_image_key()
    tag = f"{BASE_REPO}:{key}"
    present = inspect_image(tag)
    if present is not None:
        return BuiltImage(tag, False, 0.0, int(present.get("Size") or 0))
    start = time.monotonic()
    changes = (
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
        f"LABEL org.swarmlet.base-key={key}",
    )
    _debootstrap_image(tag, "base", BASE_PACKAGES, _DPKG_EXCLUDES, changes, say)
    _remove_older(BASE_REPO, keep={key})
    return BuiltImage(tag, True, time.monotonic() - start, _image_size(tag))


# What goes into the project wheel, hence into the node image.
_SOURCE_GLOBS = ("nodeagent/**/*", "manager/**/*", "deploy/**/*.py", "proto/swarmlet/**/*")
_SOURCE_FILES = ("pyproject.toml", "deploy/Dockerfile.node", "deploy/node-entrypoint.sh",
                 "deploy/python-copy.sh")


def _source_files(root: pathlib.Path) -> list[pathlib.Path]:
    files = {root / name for name in _SOURCE_FILES}
    for pattern in _SOURCE_GLOBS:
        for path in root.glob(pattern):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(path)
    return sorted(files)


def _runtime_dependencies(root: pathlib.Path) -> list[str]:
    with (root / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def node_image_key(base_tag: str) -> str:
    """The node image's tag: a hash of the base image, the Dockerfile and the tree's sources."""
    root = repo_root()
    h = hashlib.sha256()
    h.update(hashlib.sha256(base_tag.encode()).digest())
    files = _source_files(root)
    for path, digest in zip(files, _content_digests(root, files), strict=True):
        h.update(hashlib.sha256(str(path.relative_to(root)).encode()).digest())
        h.update(digest)
    return h.hexdigest()[:_HASH_CHARS]


_DIGESTS_FILE = "source-digests.json"
# A file changed within this many seconds of the last look could change again within the same
# mtime tick unseen (git's "racy" entries): its digest is not kept.
_RACY_S = 2.0


def _content_digests(root: pathlib.Path, files: list[pathlib.Path]) -> list[bytes]:
    """The SHA-256 of each file's content, reusing the one kept for a file whose size, mtime and
    inode are unchanged since (as git's index does): reading and hashing the 2 MB of sources took
    0.03 to 0.1 s of `swarmlet up`'s CPU, the stat calls a few ms."""
    kept_path = cache_dir() / _DIGESTS_FILE
    try:
        kept = json.loads(kept_path.read_text())
        if not isinstance(kept, dict):
            kept = {}
    except (OSError, ValueError):
        kept = {}
    now = time.time()
    fresh: dict[str, list[object]] = {}
    digests = []
    for path in files:
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        name = str(path.relative_to(root))
        entry = kept.get(name)
        if isinstance(entry, list) and len(entry) == 4 and entry[:3] == stamp:
            digest = bytes.fromhex(str(entry[3]))
        else:
            digest = hashlib.sha256(path.read_bytes()).digest()
        digests.append(digest)
        if now - st.st_mtime_ns / 1e9 > _RACY_S:
            fresh[name] = [*stamp, digest.hex()]
    if fresh != kept:
        tmp = kept_path.with_name(f".{_DIGESTS_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(fresh))
            os.replace(tmp, kept_path)
        except OSError:
            pass  # a read-only cache only costs the hashing next time
    return digests


# Every manylinux level that glibc 2.36 (bookworm's) runs, newest first, and pure wheels.
_PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)),
              "manylinux2014_x86_64", "linux_x86_64", "any")
# The image runs Debian bookworm's CPython 3.11 (glibc 2.36): pip is asked for exactly that,
# whatever the host's own Python is.
_TARGET_FLAGS = ("--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
                 "--abi", "cp311", "--abi", "abi3", "--abi", "none",
                 *(flag for p in _PLATFORMS for flag in ("--platform", p)))


def _download_dependencies(root: pathlib.Path, log: pathlib.Path, say: Progress) -> pathlib.Path:
    """Runtime dependency wheels (and pip's own), kept while the dependency list is unchanged."""
    deps = _runtime_dependencies(root)
    folder = cache_dir() / "wheels" / _digest([json.dumps(sorted(deps)).encode()])
    stamp = folder / ".complete"
    if stamp.exists():
        return folder
    say("downloading wheels on the host (pip download)")
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
           *_TARGET_FLAGS, "--dest", str(folder), *deps]
    run_step(cmd, log, "pip download")
    stamp.touch()
    return folder


def _remove_older(repo: str, keep: set[str], grace_s: float = 3 * 3600.0) -> None:
    """Untag earlier builds of ``repo`` so that they do not pile up.

    Tags in use by a container stay (docker refuses to untag them), and so do tags made within
    ``grace_s``: another checkout on this machine may have just built one and not yet started
    its containers.
    """
    listed = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Tag}}\t{{.CreatedAt}}", repo],
        capture_output=True, text=True, check=False,
    )
    old = []
    now = time.time()
    for line in listed.stdout.splitlines():
        tag, _, created = line.partition("\t")
        if tag in keep or tag in ("", "<none>"):
            continue
        try:
            made = datetime.datetime.strptime(created[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.UTC)
        except ValueError:
            continue  # a date this code cannot read: leave the image alone
        if now - made.timestamp() > grace_s:
            old.append(f"{repo}:{tag}")
    if old:
        subprocess.run(["docker", "image", "rm", *old], capture_output=True, check=False)
        if repo == NODE_REPO:
            # Their Python copies go too (a volume a running node still mounts stays).
            subprocess.run(["docker", "volume", "rm", *(python_volume(tag) for tag in old)],
                           capture_output=True, check=False)


# Packages the node needs from the project wheel; a wheel without one would build an image
# whose agent cannot start, so the build stops here instead.
_REQUIRED_PACKAGES = ("nodeagent/__main__.py", "manager/__init__.py", "swarmlet/v1/__init__.py")


def _check_wheel(folder: pathlib.Path) -> None:
    import zipfile

    wheel = next(folder.glob("swarmlet-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [p for p in _REQUIRED_PACKAGES if p not in names]
    if missing:
        raise BuildError(
            f"the project wheel lacks {', '.join(missing)}: pyproject.toml's package list must include "
            'them (for swarmlet/: [tool.setuptools.packages.find] where = [".", "proto"], '
            'include "swarmlet*")'
        )


def ensure_node_image(base_tag: str, progress: Progress | None = None) -> BuiltImage:
    """Build the node image on ``base_tag`` unless one with the same inputs exists; tag it latest."""
    say = progress or (lambda _msg: None)
    root = repo_root()
    key = node_image_key(base_tag)
    tag = f"{NODE_REPO}:{key}"
    start = time.monotonic()
    present = inspect_image(tag)
    built = present is None
    if built:
        log = cache_dir() / "node-build.log"
        log.write_text("")
        deps = _download_dependencies(root, log, say)
        with tempfile.TemporaryDirectory(prefix="swarmlet-node-", dir=cache_dir()) as tmp:
            context = pathlib.Path(tmp) / "context"
            context.mkdir()
            project = pathlib.Path(tmp) / "project"
            say("building the swarmlet wheel from the tree")
            run_step([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--quiet",
                  "--no-deps", "--no-build-isolation", "--wheel-dir", str(project), str(root)],
                 log, "pip wheel")
            _check_wheel(project)
            say("installing the wheels offline (pip install --no-index)")
            run_step([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                  "--no-index", "--find-links", str(project), "--find-links", str(deps),
                  *_TARGET_FLAGS, "--target", str(context / "site"), "swarmlet"],
                 log, "pip install")
            shutil.rmtree(context / "site" / "bin", ignore_errors=True)  # console scripts: unused
            # The image's own key, which the node's entry point compares with the KEY of the
            # Python copy in a volume before it uses that copy (ensure_python_volume).
            (context / "site" / pythoncopy.IMAGE_KEY_FILE).write_text(key + "\n")
            shutil.copy(root / "deploy" / "Dockerfile.node", context / "Dockerfile")
            for script in ("node-entrypoint.sh", "python-copy.sh"):
                shutil.copy(root / "deploy" / script, context / script)
            say("building the node image (docker build)")
            env = dict(os.environ, DOCKER_BUILDKIT="0")
            run_step(["docker", "build", "--quiet", "--build-arg", f"BASE={base_tag}",
                  "--label", f"{NODE_KEY_LABEL}={key}", "-t", tag, str(context)],
                 log, "docker build", env)
        # The wheels' ABI must suit the image's python: importing the compiled ones proves it.
        say("checking the node image")
        run_step(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", tag, "-c",
              "import grpc, cryptography.x509, google.protobuf, zeroconf, prometheus_client, rich, "
              "nodeagent"],
             log, "node image check")
        present = inspect_image(tag)
    _point_latest(tag, NODE_IMAGE, present)
    try:
        pythoncopy.ensure_python_volume(tag, say)
        pythoncopy.ensure_python_volume(tag, say, python_volume(NODE_IMAGE))
    except pythoncopy.PythonCopyError as e:
        raise BuildError(str(e)) from None
    if built:
        _remove_older(NODE_REPO, keep={key, "latest"})
    return BuiltImage(tag, built, time.monotonic() - start, int((present or {}).get("Size") or 0))


PROMETHEUS_REPO = "swarmlet/prometheus"
"""Repository name of the Prometheus image; tagged with its input hash and ``latest``."""
PROMETHEUS_IMAGE = f"{PROMETHEUS_REPO}:latest"
"""The tag compose.yml's ``prometheus`` service uses."""
PROMETHEUS_PACKAGES = ("prometheus",)
"""Debian's Prometheus server (2.42 in bookworm), its web UI assets and what they depend on."""
# Bump when the Prometheus image's recipe changes in a way the other inputs do not show.
_PROMETHEUS_RECIPE_VERSION = 1
_PROMETHEUS_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "USER prometheus",
    "WORKDIR /var/lib/prometheus",
    "EXPOSE 9090/tcp",
    'ENTRYPOINT ["/usr/bin/prometheus"]',
    'CMD ["--config.file=/etc/prometheus/prometheus.yml"]',
)
"""``docker import`` changes: the package's own user and data folder (its postinst makes both)."""
# The UI loads moment-timezone-with-data.min.js only; the package's per-zone data files are 212 MB.
_PROMETHEUS_DPKG_EXCLUDES = (*_DPKG_EXCLUDES, "path-exclude=/usr/share/javascript/moment-timezone/data/*")


def prometheus_image_key() -> str:
    """The Prometheus image's tag: a hash of its suite, mirrors, packages and recipe."""
    return _recipe_key(_PROMETHEUS_RECIPE_VERSION, PROMETHEUS_PACKAGES, _PROMETHEUS_DPKG_EXCLUDES,
                       _PROMETHEUS_CHANGES)


def ensure_prometheus_image(progress: Progress | None = None) -> BuiltImage:
    """Build the Prometheus image unless one with the same inputs exists; tag it latest.

    Like the base image, it is a root file system that mmdebstrap makes from Debian packages
    (the essential set and ``prometheus`` with its dependencies), loaded with ``docker import``:
    nothing is pulled and nothing runs inside a build. Its configuration is not in the image:
    compose.yml mounts deploy/prometheus.yml, so editing that needs no rebuild."""
    say = progress or (lambda _msg: None)
    key = prometheus_image_key()
    tag = f"{PROMETHEUS_REPO}:{key}"
    start = time.monotonic()
    present = inspect_image(tag)
    built = present is None
    if built:
        changes = (*_PROMETHEUS_CHANGES, f"LABEL org.swarmlet.prometheus-key={key}")
        log = _debootstrap_image(tag, "prometheus", PROMETHEUS_PACKAGES, _PROMETHEUS_DPKG_EXCLUDES,
                                 changes, say)
        say("checking the Prometheus image")
        run_step(["docker", "run", "--rm", "--network", "none", tag, "--version"], log,
                 "prometheus image check")
        present = inspect_image(tag)
    _point_latest(tag, PROMETHEUS_IMAGE, present)
    if built:
        _remove_older(PROMETHEUS_REPO, keep={key, "latest"})
    return BuiltImage(tag, built, time.monotonic() - start, int((present or {}).get("Size") or 0))


# The nginx image: a reference reverse proxy for bench/mesh.py, built as the base image is (Debian
# packages into a root file system with mmdebstrap, then docker import; nothing pulled). Only the
# benchmark uses it; no node or test does.
NGINX_REPO = "swarmlet/nginx"
"""Repository name of the nginx image; the tag is the hash of its inputs."""
NGINX_PACKAGES = ("nginx-light",)
"""Debian's nginx with the core modules (proxy and upstream among them)."""
_NGINX_RECIPE_VERSION = 1


def nginx_image_key() -> str:
    """The nginx image's tag: a hash of its recipe."""
    return _recipe_key(_NGINX_RECIPE_VERSION, NGINX_PACKAGES, _DPKG_EXCLUDES)


def ensure_nginx_image(progress: Progress | None = None) -> BuiltImage:
    """Build the nginx image (``nginx -g 'daemon off;'``) unless one with the same inputs exists."""
    say = progress or (lambda _msg: None)
    key = nginx_image_key()
    tag = f"{NGINX_REPO}:{key}"
    if image_exists(tag):
        return BuiltImage(tag, False, 0.0, _image_size(tag))
    start = time.monotonic()
    changes = (
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["nginx", "-g", "daemon off;"]',
        f"LABEL org.swarmlet.nginx-key={key}",
    )
    _debootstrap_image(tag, "nginx", NGINX_PACKAGES, _DPKG_EXCLUDES, changes, say)
    return BuiltImage(tag, True, time.monotonic() - start, _image_size(tag))


def ensure_images(progress: Progress | None = None) -> list[BuiltImage]:
    """Build whatever is missing: the base image, then the node image, and the Prometheus image.

    Returns all three, the node image second."""
    base = ensure_base_image(progress)
    node = ensure_node_image(base.tag, progress)
    prometheus = ensure_prometheus_image(progress)
    return [base, node, prometheus]


def main() -> int:
    """Build what is missing and print what was built or reused, with times and sizes."""
    start = time.monotonic()
    try:
        images = ensure_images(
            lambda msg: print(f"  {time.monotonic() - start:5.1f} s  {msg}...", flush=True)
        )
    except BuildError as e:
        print(f"swarmlet: {e}", file=sys.stderr)
        return 1
    for image in images:
        what = f"built in {image.seconds:.1f} s" if image.built else "reused"
        print(f"{image.tag}: {what}, {image.size_bytes / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
