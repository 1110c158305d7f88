#!/usr/bin/env bash
# Start a private Docker engine for the container tests, in the background, and wait until it answers.
#
# No private-range networking: --bridge=none --iptables=false --ip-forward=false, so builds and containers use
# `--network host` only. The engine keeps its own state under $VERIFILY_DOCKER_DIR (default /var/lib/verifily-docker):
# data-root (image and build cache, kept between runs so a second build is warm), exec-root, pidfile, socket, log.
# Installs the Debian package docker.io when dockerd is missing. Prints `export DOCKER_HOST=...` on stdout last;
# stop everything with tests/container/stop_dockerd.sh. Reuses an engine this script already started.
set -euo pipefail
DIR=${VERIFILY_DOCKER_DIR:-/var/lib/verifily-docker}
SOCK="$DIR/docker.sock"
export DOCKER_HOST="unix://$SOCK"

log() { echo "start_dockerd: $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then log "dockerd is missing and installing docker.io needs root"; exit 1; fi
  log "installing docker.io (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends docker.io >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends docker.io >&2; }
fi
# the engine's own client (matches the daemon); any docker client on PATH works too
DOCKER=$(command -v docker || echo /usr/bin/docker)

mkdir -p "$DIR"
if [ -f "$DIR/dockerd.pid" ] && kill -0 "$(cat "$DIR/dockerd.pid")" 2>/dev/null \
   && "$DOCKER" -H "$DOCKER_HOST" version >/dev/null 2>&1; then
  log "already running (pid $(cat "$DIR/dockerd.pid"))"
  echo "export DOCKER_HOST=$DOCKER_HOST"
  exit 0
fi
rm -f "$DIR/dockerd.pid" "$SOCK"

# setsid: the engine must outlive this script (pytest's fixture runs it in a subprocess), not its process group
setsid dockerd \
  --host "$DOCKER_HOST" \
  --data-root "$DIR/data" \
  --exec-root "$DIR/exec" \
  --pidfile "$DIR/dockerd.pid" \
  --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
  --userland-proxy=false \
  >"$DIR/dockerd.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$DIR/dockerd.launcher.pid"

for _ in $(seq 1 120); do
  if "$DOCKER" -H "$DOCKER_HOST" version >/dev/null 2>&1; then
    log "ready (pid $pid, state in $DIR)"
    echo "export DOCKER_HOST=$DOCKER_HOST"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    log "dockerd exited; last lines of $DIR/dockerd.log:"; tail -n 20 "$DIR/dockerd.log" >&2; exit 1
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; last lines of $DIR/dockerd.log:"; tail -n 20 "$DIR/dockerd.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
