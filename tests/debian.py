"""Debian packages the test tiers need (PostgreSQL for the server tests, Chromium for the browser tests), installed
with apt-get when missing and this is root, as the container tier installs docker.io (tests/container/)."""

from __future__ import annotations

import os
import shutil
import subprocess


def apt_install(package: str) -> bool:
    """Install `package` (one `apt-get update` and a retry if the first try fails); False when this cannot
    (not root, or no apt-get)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    return True
