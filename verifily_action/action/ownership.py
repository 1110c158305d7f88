"""Give what the Action wrote in the workspace back to the workspace's owner.

The Action's container runs as root (actions/runner#434, #3541): the files it writes under GITHUB_WORKSPACE — run
folders, comparisons, locks, Hugging Face caches a user points there, a summary written there — would stay
root-owned, and on a self-hosted runner the next job's actions/checkout cannot clean them. `hand_back` runs once,
when the flow ends however it ends: every path under the workspace owned by this process's user gets the uid and
gid of the workspace folder itself (stat'ed; the runner's user made it). Nothing happens when this process is not
root (it could not chown) or already is the owner. Links are changed themselves, never followed.
"""

from __future__ import annotations

import os
from pathlib import Path


def hand_back(workspace: Path) -> int:
    """Chown what this process's user owns under `workspace` to the workspace's owner; returns how many paths
    changed. A path that cannot be changed (gone meanwhile, a read-only mount) is left as it is."""
    me = os.geteuid()
    try:
        st = os.stat(workspace)
    except OSError:
        return 0
    owner = (st.st_uid, st.st_gid)
    if me != 0 or owner == (me, os.getegid()):
        return 0
    changed = 0
    for root, dirs, files in os.walk(workspace):  # links to folders are listed in dirs but not entered
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                mine = os.lstat(path)
                if mine.st_uid == me and (mine.st_uid, mine.st_gid) != owner:
                    os.chown(path, *owner, follow_symlinks=False)
                    changed += 1
            except OSError:
                continue
    return changed
