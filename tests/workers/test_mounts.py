"""A local share that is really a CIFS/SMB3 or NFS mount: its mode bits are the client's
invention ("everyone may read" for HR's files), so they are never taken as permissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.permissions.posix import PermissionResolver
from workers.sources import local
from workers.sources.local import LocalFolder
from workers.sources.mounts import filesystem_of, network_mount_note

MOUNTINFO = """\
27 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
90 27 0:50 / /mnt/corp rw,relatime shared:60 - cifs //fs1/corp rw,vers=3.1.1,uid=0,file_mode=0755
91 27 0:51 / /mnt/nas\\040share rw,relatime - nfs4 nas:/export rw
92 90 253:2 / /mnt/corp/local rw,relatime - ext4 /dev/vdb rw
"""


def test_the_mount_a_path_is_on_is_told_from_mountinfo() -> None:
    assert filesystem_of("/srv/docs", MOUNTINFO) == "ext4"
    assert filesystem_of("/mnt/corp", MOUNTINFO) == "cifs"
    assert filesystem_of("/mnt/corp/hr/salaries", MOUNTINFO) == "cifs"
    assert filesystem_of("/mnt/corp/local/x", MOUNTINFO) == "ext4"  # the longest mount point
    assert filesystem_of("/mnt/nas share/a", MOUNTINFO) == "nfs4"  # octal escapes
    assert filesystem_of("/mnt/corpus", MOUNTINFO) == "ext4"  # not a prefix match
    assert network_mount_note("/srv/docs", MOUNTINFO) is None
    note = network_mount_note("/mnt/corp/hr", MOUNTINFO)
    assert note and "cifs mount" in note and "smb://" in note


def test_a_share_on_a_network_mount_is_readable_by_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path.chmod(0o755)
    (tmp_path / "salaries.txt").write_text("x")
    (tmp_path / "salaries.txt").chmod(0o644)  # "everyone may read", says the mount
    monkeypatch.setattr(local, "network_mount_note",
                        lambda root: network_mount_note("/mnt/corp", MOUNTINFO))  # fmt: skip
    share = LocalFolder("hr", str(tmp_path), PermissionResolver())
    access, note = share.permissions("salaries.txt")
    assert access.allow == frozenset() and note and "cifs mount" in note
    monkeypatch.setattr(local, "network_mount_note", lambda root: None)  # unmounted: a disk again
    share.new_pass()
    access, note = share.permissions("salaries.txt")
    assert "everyone" in access.allow and note is None
