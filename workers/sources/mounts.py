"""Is a local folder really a network mount? A CIFS/SMB3 or NFS mount shows every file with the
mount's own owner and mode bits (often "everyone may read"): taken as permissions, they would
give HR's files to every user. Such a share's documents are readable by nobody, with a status
line that says to use an smb:// share instead (which reads the real descriptors)."""

from __future__ import annotations

import os

#: file systems whose owner and mode bits are the client's invention, not the server's
NETWORK_FILESYSTEMS = frozenset({"cifs", "smb3", "smbfs", "nfs", "nfs4", "9p", "fuse.sshfs",
                                 "fuse.smbnetfs", "davfs"})  # fmt: skip


def filesystem_of(path: str, mountinfo: str | None = None) -> str | None:
    """The file system type of the mount ``path`` is on (the longest mount point above it), from
    /proc/self/mountinfo; None when it cannot be told."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
                mountinfo = fh.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, fstype = "", None
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = _unescape(fields[4])
        after = line.split(" - ", 1)[1].split()
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best) and after:
            best, fstype = mount_point, after[0]
    return fstype


def network_mount_note(path: str, mountinfo: str | None = None) -> str | None:
    """Why the mode bits of files under ``path`` cannot be trusted, or None."""
    fstype = filesystem_of(path, mountinfo)
    if fstype not in NETWORK_FILESYSTEMS:
        return None
    return (f"the share is a {fstype} mount: its owners and mode bits are the mount's, not the "
            f"file server's; readable by nobody (index it as smb://HOST/SHARE instead, which "
            f"reads the real permissions)")  # fmt: skip


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, ch)
    return field
