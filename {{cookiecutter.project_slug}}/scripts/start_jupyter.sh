#!/usr/bin/env bash
# Start JupyterLab in the container, but never without a token: an open notebook server on a
# GPU machine is a remote shell for anyone who can reach the port.
set -euo pipefail
if [ -z "${JUPYTER_TOKEN:-}" ] || [ "${#JUPYTER_TOKEN}" -lt 16 ]; then
  echo "start_jupyter: set JUPYTER_TOKEN to a random string of 16+ characters," \
    "e.g. docker run -e JUPYTER_TOKEN=\"\$(openssl rand -hex 24)\" ..." >&2
  exit 1
fi
exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser \
  --IdentityProvider.token="$JUPYTER_TOKEN" --ServerApp.root_dir=/app
