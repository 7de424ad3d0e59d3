#!/usr/bin/env bash
# Start JupyterLab in the container, but never without a token: an open notebook server on a
# GPU machine is a remote shell for anyone who can reach the port.
set -euo pipefail
if [ -z "${JUPYTER_TOKEN:-}" ] || [ "${#JUPYTER_TOKEN}" -lt 16 ]; then
  echo "start_jupyter: set JUPYTER_TOKEN to a random string of 16+ characters," \
    "e.g. export JUPYTER_TOKEN=\"\$(openssl rand -hex 24)\"; docker run -e JUPYTER_TOKEN ..." >&2
  exit 1
fi
# Jupyter reads the token from JUPYTER_TOKEN itself: on the command line it would show in `ps`.
# 0.0.0.0 inside the container only; publish the port on the host's loopback
# (docker run -p 127.0.0.1:8888:8888), not on every interface.
exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --ServerApp.root_dir=/app
