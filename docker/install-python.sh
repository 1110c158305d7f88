#!/bin/sh
# Make sure the image has python3 with venv (the one step where the targets' bases differ in what they ship):
# python:3.11-slim and the tests' Debian base already have it; the nvidia/cuda (Ubuntu) base gets Ubuntu's packages.
set -eu
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates
rm -rf /var/lib/apt/lists/*
