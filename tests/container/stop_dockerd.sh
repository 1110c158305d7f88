#!/usr/bin/env bash
# Stop the engine tests/container/start_dockerd.sh started, and everything it started: its containers first, then
# dockerd (which stops the containerd it manages). Waits for the processes to exit; safe to run twice.
set -uo pipefail
DIR=${VERIFILY_DOCKER_DIR:-/var/lib/verifily-docker}
SOCK="$DIR/docker.sock"
DOCKER=$(command -v docker || echo /usr/bin/docker)
log() { echo "stop_dockerd: $*" >&2; }

pid=""
for f in "$DIR/dockerd.pid" "$DIR/dockerd.launcher.pid"; do
  if [ -z "$pid" ] && [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then pid=$(cat "$f"); fi
done
if [ -z "$pid" ]; then
  log "not running"; rm -f "$DIR/dockerd.pid" "$DIR/dockerd.launcher.pid"; exit 0
fi

if [ -S "$SOCK" ]; then
  ids=$("$DOCKER" -H "unix://$SOCK" ps -q 2>/dev/null || true)
  if [ -n "$ids" ]; then
    log "stopping containers: $(echo $ids)"
    # shellcheck disable=SC2086
    "$DOCKER" -H "unix://$SOCK" rm -f $ids >/dev/null 2>&1 || true
  fi
fi

# the managed containerd is dockerd's child: remember it, in case it outlives dockerd
children=$(pgrep -P "$pid" 2>/dev/null || true)
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 60); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$pid" 2>/dev/null; then log "dockerd (pid $pid) did not stop in 30 s; killing it"; kill -KILL "$pid"; fi
for c in $children; do
  if kill -0 "$c" 2>/dev/null; then
    kill -TERM "$c" 2>/dev/null || true; sleep 1; kill -KILL "$c" 2>/dev/null || true
  fi
done
rm -f "$DIR/dockerd.pid" "$DIR/dockerd.launcher.pid" "$SOCK"
log "stopped (pid $pid)"
