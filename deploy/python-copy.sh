#!/bin/sh
# Fills /opt/swarmlet/python (a named volume) with this image's Python: the standard library as
# PYTHONHOME expects it (lib/python3.11, lib-dynload inside) and dist-packages as site/. KEY,
# this image's key, is written last: a copy cut short has none and is never used
# (deploy/node-entrypoint.sh). deploy/images.py runs it once per node image.
set -eu
copy=/opt/swarmlet/python
rm -rf "$copy/KEY" "$copy/lib" "$copy/site"
mkdir -p "$copy/lib"
cp -a /usr/lib/python3.11 "$copy/lib/python3.11"
cp -a /usr/local/lib/python3.11/dist-packages "$copy/site"
sync
cp /usr/local/lib/python3.11/dist-packages/.swarmlet-image-key "$copy/KEY.new"
sync
mv "$copy/KEY.new" "$copy/KEY"
sync
