#!/usr/bin/env bash
# Make the local base image the container tests build on (no image registry is reachable here): a minimal Debian
# bookworm made with debootstrap, with python3, python3-venv and python3-pip from Debian's packages, and this
# machine's CA bundle (package downloads pass a TLS-inspecting proxy), imported as $BASE_TAG.
#
# Uses the apt mirror this machine's apt sources use. Cached twice: the image tag (skip everything when the engine
# has it) and the rootfs tarball under $VERIFILY_DOCKER_DIR/cache (re-import only, after the engine's data is wiped).
# Needs root, debootstrap (installed with apt-get when missing) and DOCKER_HOST pointing at a running engine.
set -euo pipefail
BASE_TAG=${VERIFILY_BASE_TAG:-verifily-test/debian-python:bookworm}
DIR=${VERIFILY_DOCKER_DIR:-/var/lib/verifily-docker}
CACHE="$DIR/cache"
TARBALL="$CACHE/debian-bookworm-python3.tar"
CA_BUNDLE=${VERIFILY_CA_BUNDLE:-$(python3 -m pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)}
DOCKER=$(command -v docker || echo /usr/bin/docker)
log() { echo "make_base_image: $*" >&2; }

if "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
  log "$BASE_TAG already present"; echo "$BASE_TAG"; exit 0
fi

if [ ! -s "$TARBALL" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2; }
  fi
  # the mirror apt uses on this machine for Debian's main archive (deb822 or one-line sources)
  MIRROR=${VERIFILY_DEBIAN_MIRROR:-$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null \
    | awk '$2 == "bookworm" {print $1; exit}')}
  MIRROR=${MIRROR:-http://deb.debian.org/debian/}
  mkdir -p "$CACHE"
  root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  log "debootstrap bookworm from $MIRROR (a few minutes the first time)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip \
    bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
  install -D -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  # keep the image small: apt lists and the .deb cache are not needed to run python
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar --numeric-owner -C "$root" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
fi

log "importing $TARBALL as $BASE_TAG"
"$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$TARBALL" "$BASE_TAG" >/dev/null
echo "$BASE_TAG"
