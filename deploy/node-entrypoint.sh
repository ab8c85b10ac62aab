#!/bin/sh
# The node image's entry point: `python3 -m nodeagent` with the node's arguments.
#
# Every container reads the image's files through a fuse-overlayfs mount of its own (this engine's
# storage driver), and the kernel caches those reads per mount: five nodes starting at once each
# read Python's ~600 modules through their own FUSE daemon, on the same two cores. `swarmlet up`
# fills a named volume once per node image with a copy of the image's Python (the standard library
# and dist-packages) and mounts it at /opt/swarmlet/python: read from there, the files come
# through one bind mount and one page cache shared by every node (docs/bringup.md). Python runs
# from the copy only when the copy's KEY names this very image; otherwise (no volume, a volume
# of another build) it runs from the image's own files, as it always could.
# (The SWARMLET_ENTRY_* variables exist for tests/unit/test_node_entrypoint.py only.)
copy=${SWARMLET_ENTRY_COPY:-/opt/swarmlet/python}
mine=${SWARMLET_ENTRY_KEY:-/usr/local/lib/python3.11/dist-packages/.swarmlet-image-key}
if [ -r "$copy/KEY" ] && read -r held <"$copy/KEY" && read -r want <"$mine" && [ "$held" = "$want" ]; then
    export PYTHONHOME="$copy" PYTHONPATH="$copy/site"
fi
exec ${SWARMLET_ENTRY_PYTHON:-python3} -m nodeagent "$@"
