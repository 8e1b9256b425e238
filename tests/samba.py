"""A real Active Directory domain controller with a file share, for the tests of Windows file
servers: Samba 4 (Debian's packages, installed by the Makefile), provisioned in a temporary
folder and bound to a loopback address of its own (127.0.0.N), so that two test runs on one
machine never meet. Users, groups and ACLs are made with Samba's own tools, over its protocols."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.directory import LdapDirectory

ADMIN_PASSWORD = "Adm1n-" + uuid.uuid4().hex[:10] + "!"
USER_PASSWORD = "Us3r-" + uuid.uuid4().hex[:10] + "!"


def _listening(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((ip, port)) == 0


def _free_loopback() -> str:
    taken = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True,
                           text=True).stdout  # fmt: skip
    for _ in range(200):
        ip = f"127.0.{random.randint(1, 250)}.{random.randint(2, 250)}"
        if f" {ip}/" not in taken and not _listening(ip, 445):
            return ip
    raise RuntimeError("no free loopback address")


@dataclass
class SambaDC:
    ip: str
    folder: Path
    share_path: Path
    process: subprocess.Popen[bytes]
    domain: str = "CORP"
    realm: str = "corp.test"
    users: set[str] = field(default_factory=set)

    @property
    def conf(self) -> str:
        return str(self.folder / "etc" / "smb.conf")

    @property
    def url(self) -> str:
        return f"smb://{self.ip}/corp"

    @property
    def admin(self) -> str:
        return f"{self.domain}\\Administrator%{ADMIN_PASSWORD}"

    def env(self) -> dict[str, str]:
        """ShareIndex's settings for this domain: the service account and the directory."""
        return {
            "SHAREINDEX_SMB_USERNAME": f"{self.domain}\\svc",
            "SHAREINDEX_SMB_PASSWORD": USER_PASSWORD,
            "SHAREINDEX_DIRECTORY_URL": f"ldaps://{self.ip}",
            "SHAREINDEX_DIRECTORY_USERNAME": f"svc@{self.realm}",
            "SHAREINDEX_DIRECTORY_PASSWORD": USER_PASSWORD,
            "SHAREINDEX_DIRECTORY_TLS_VERIFY": "false",  # the DC's self-signed certificate
        }

    def service_settings(self) -> dict[str, Any]:
        """The same as ``env``, as settings for ``load_settings`` (a service in this process)."""
        return {key.removeprefix("SHAREINDEX_").lower(): value for key, value in self.env().items()}

    def directory(self, cache_s: float = 0) -> LdapDirectory:
        """The directory as ShareIndex reads it (close it after use)."""
        from workers.directory import LdapDirectory

        env = self.env()
        return LdapDirectory(env["SHAREINDEX_DIRECTORY_URL"], env["SHAREINDEX_DIRECTORY_USERNAME"],
                             env["SHAREINDEX_DIRECTORY_PASSWORD"], tls_verify=False,
                             cache_s=cache_s)  # fmt: skip

    def tool(self, *args: str) -> str:
        proc = subprocess.run(["samba-tool", *args, "-H", f"ldap://{self.ip}",
                               f"--configfile={self.conf}", "-U", self.admin],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"samba-tool {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def user(self, name: str) -> None:
        if name not in self.users:
            self.tool("user", "create", name, USER_PASSWORD)
            self.users.add(name)

    def group(self, name: str, *members: str) -> None:
        self.tool("group", "add", name)
        if members:
            self.add_members(name, *members)

    def add_members(self, group: str, *members: str) -> None:
        self.tool("group", "addmembers", group, ",".join(members))

    def smbclient(self, command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        auth = self.admin if user is None else f"{self.domain}\\{user}%{USER_PASSWORD}"
        return subprocess.run(["smbclient", "-s", self.conf, f"//{self.ip}/corp", "-U", auth,
                               "-c", command], capture_output=True, text=True, timeout=120)  # fmt: skip

    def put(self, rel: str, content: str | bytes) -> None:
        """Write a file through SMB (it gets the descriptor Windows would give it)."""
        local = self.folder / "upload.tmp"
        local.write_bytes(content.encode() if isinstance(content, str) else content)
        folder, _, name = rel.rpartition("/")
        command = (f'cd "{folder}"; ' if folder else "") + f'put "{local}" "{name}"'
        proc = self.smbclient(command)
        if proc.returncode or "NT_STATUS" in proc.stdout:
            raise RuntimeError(f"put {rel}: {proc.stdout} {proc.stderr}")

    def mkdir(self, rel: str) -> None:
        proc = self.smbclient(f'mkdir "{rel}"')
        if proc.returncode or "NT_STATUS" in proc.stdout:
            raise RuntimeError(f"mkdir {rel}: {proc.stdout}")

    def acl(self, rel: str, *aces: str, propagate: bool = False) -> None:
        """Replace the DACL of ``rel`` (aces as ``CORP\\HR:ALLOWED/0x0/READ``), in this order;
        ``propagate``: a folder's inheritable ACEs rewritten into everything below it."""
        spec = ",".join(f"ACL:{a}" for a in aces)
        more = ["--propagate-inheritance"] if propagate else []
        proc = subprocess.run(["smbcacls", "-s", self.conf, f"//{self.ip}/corp", rel,
                               "-U", self.admin, *more, "--set", spec],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"smbcacls {rel} {spec}: {proc.stdout} {proc.stderr}")

    def break_inheritance(self, rel: str) -> None:
        """The folder stops inheriting from its parent (the inherited ACEs removed)."""
        proc = subprocess.run(["smbcacls", "-s", self.conf, f"//{self.ip}/corp", rel,
                               "-U", self.admin, "--inherit=remove"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"smbcacls {rel} --inherit=remove: {proc.stdout} {proc.stderr}")

    def can_read(self, user: str, rel: str) -> bool:
        """The DC's own verdict: ``user`` opens the file for reading over SMB (one SMB2 CREATE of
        the file itself: traversal of the folders above is not checked, as on Windows)."""
        import smbclient
        from smbprotocol.exceptions import SMBOSError

        cache: dict[str, object] = {}  # a session of this user's own
        path = "\\\\" + self.ip + "\\corp\\" + rel.replace("/", "\\")
        try:
            smbclient.register_session(self.ip, username=f"{self.domain}\\{user}",
                                       password=USER_PASSWORD, connection_cache=cache)  # fmt: skip
            with smbclient.open_file(path, mode="rb", connection_cache=cache) as fh:
                fh.read(1)
            return True
        except SMBOSError as exc:
            if exc.ntstatus == 0xC0000022:  # STATUS_ACCESS_DENIED
                return False
            raise
        finally:
            smbclient.reset_connection_cache(connection_cache=cache)

    @contextlib.contextmanager
    def hold_open(self, rel: str) -> Iterator[None]:
        """Another client (the Administrator, a connection of its own) holds ``rel`` open for
        writing, sharing nothing: every other open of its data fails with a sharing violation."""
        import smbclient

        cache: dict[str, object] = {}
        path = "\\\\" + self.ip + "\\corp\\" + rel.replace("/", "\\")
        smbclient.register_session(self.ip, username=f"{self.domain}\\Administrator",
                                   password=ADMIN_PASSWORD, connection_cache=cache)  # fmt: skip
        try:
            with smbclient.open_file(path, mode="r+b", share_access=None, connection_cache=cache):
                yield
        finally:
            smbclient.reset_connection_cache(connection_cache=cache)

    def drop_connections(self) -> list[int]:
        """Kill the smbd process of every client connection (the server drops them, as a
        restarted or failed-over file server does); the pids killed."""
        proc = subprocess.run(["smbstatus", "-s", self.conf, "-p"], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        pids = [int(line.split()[0]) for line in proc.stdout.splitlines()
                if line.split() and line.split()[0].isdigit()]  # fmt: skip
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def start_dc() -> SambaDC:
    ip = _free_loopback()
    subprocess.run(["ip", "addr", "add", f"{ip}/8", "dev", "lo"], check=True)
    folder = Path(tempfile.mkdtemp(prefix="shareindex-dc-"))
    folder.chmod(0o755)  # the share below: domain users' ids must traverse it
    try:
        subprocess.run(
            ["samba-tool", "domain", "provision", "--realm=CORP.TEST", "--domain=CORP",
             "--server-role=dc", "--dns-backend=NONE", f"--adminpass={ADMIN_PASSWORD}",
             f"--targetdir={folder}", "--host-name=dc1", f"--host-ip={ip}",
             f"--option=interfaces={ip}/8", "--option=bind interfaces only=yes"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        share = folder / "corp"
        share.mkdir()
        conf = folder / "etc" / "smb.conf"
        text = conf.read_text()
        text = re.sub(r"\tserver services = .*\n",
                      "\tserver services = -dns -ntp -kcc -dnsupdate -drepl\n", text)  # fmt: skip
        text = re.sub(r"\tlog file = .*\n", f"\tlog file = {folder}/log.%m\n", text)
        text = text.replace("[global]\n", f"[global]\n\tpid directory = {folder}\n", 1)
        conf.write_text(text + f"\n[corp]\n\tpath = {share}\n\tread only = No\n")
        # interactive: samba stops when its stdin closes, so a test run that dies takes it along
        process = subprocess.Popen(["samba", "-s", str(conf), "-i"], stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)  # fmt: skip
        dc = SambaDC(ip, folder, share, process)
        deadline = time.monotonic() + 120
        while not (_listening(ip, 445) and _listening(ip, 636)):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"samba did not start on {ip}")
            time.sleep(0.2)
        dc.user("svc")
        # the share root: the service account reads the whole tree, files get no Everyone;
        # domain users may traverse it (Samba checks traversal through the file system, where
        # Windows grants bypass-traverse: without it the DC would refuse what Windows grants)
        dc.acl("/", f"{dc.domain}\\Administrator:ALLOWED/OI|CI/FULL",
               f"{dc.domain}\\svc:ALLOWED/OI|CI/READ",
               f"{dc.domain}\\Domain Users:ALLOWED/0x0/0x00100020")  # fmt: skip
        return dc
    except BaseException:
        _remove(ip, folder)
        raise


def _remove(ip: str, folder: Path) -> None:
    subprocess.run(["ip", "addr", "del", f"{ip}/8", "dev", "lo"], capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def stop_dc(dc: SambaDC) -> None:
    dc.stop()
    _remove(dc.ip, dc.folder)
