"""Who may open a device node, and through what (shared by the KVM and DRI probes)."""

from __future__ import annotations

import grp
import os
import stat


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:  # a captured tree's gid need not exist here
        return str(gid)


def access_via(st: os.stat_result) -> str | None:
    """Which permission class grants this process read-write on ``st``: "root",
    "owner", "group:<name>" or "other"; None when none does (mode bits only: an
    ACL or a device cgroup can still say no, which the real open reports)."""
    if os.geteuid() == 0:
        return "root"
    rw_owner, rw_group, rw_other = stat.S_IRUSR | stat.S_IWUSR, stat.S_IRGRP | stat.S_IWGRP, stat.S_IROTH | stat.S_IWOTH
    if st.st_uid == os.geteuid():
        return "owner" if st.st_mode & rw_owner == rw_owner else None
    if st.st_gid in (os.getegid(), *os.getgroups()) and st.st_mode & rw_group == rw_group:
        return f"group:{group_name(st.st_gid)}"
    return "other" if st.st_mode & rw_other == rw_other else None
