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
    from index.permissions.directory import LdapDirectory

ADMIN_PASSWORD = "Adm1n-" + uuid.uuid4().hex[:10] + "!"
USER_PASSWORD = "Us3r-" + uuid.uuid4().hex[:10] + "!"
#: shares beside corp, made at provisioning, one per test module that needs a share of its own
EXTRA_SHARES = ("aux1", "aux2", "aux3", "aux4")
#: what the server answers a user it refuses: ACCESS_DENIED (tree connect, open), and at logon
#: ACCOUNT_DISABLED, ACCOUNT_LOCKED_OUT, ACCOUNT_EXPIRED
REFUSED = {0xC0000022, 0xC0000072, 0xC0000234, 0xC0000193}
#: a service account the server refuses the SRVSVC pipe (IPC$): it cannot read share permissions
NO_RPC_ACCOUNT = "svc-norpc"


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
    #: the extra shares handed out (``take_share``)
    taken: set[str] = field(default_factory=set)

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
        from index.permissions.directory import LdapDirectory

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

    def can_read(self, user: str, rel: str, share: str = "corp") -> bool:
        """The DC's own verdict: ``user`` connects to ``share`` and opens the file for reading
        over SMB (the tree connect checks the share's permissions, the SMB2 CREATE of the file
        itself its NTFS ACL: traversal of the folders above is not checked, as on Windows)."""
        import smbclient
        from smbprotocol.exceptions import SMBOSError, SMBResponseException

        cache: dict[str, object] = {}  # a session of this user's own
        path = "\\\\" + self.ip + f"\\{share}\\" + rel.replace("/", "\\")
        try:
            smbclient.register_session(self.ip, username=f"{self.domain}\\{user}",
                                       password=USER_PASSWORD, connection_cache=cache)  # fmt: skip
            with smbclient.open_file(path, mode="rb", connection_cache=cache) as fh:
                fh.read(1)
            return True
        except (SMBOSError, SMBResponseException) as exc:
            status = getattr(exc, "ntstatus", None) or getattr(exc, "status", None)
            if status in REFUSED:  # the logon, the tree connect or the open
                return False
            raise
        finally:
            smbclient.reset_connection_cache(connection_cache=cache)

    def sid(self, name: str) -> str:
        """The objectSid of a user or group."""
        kind = "user" if name in self.users or name in ("svc", "Administrator") else "group"
        out = self.tool(kind, "show", name, "--attributes=objectSid")
        return next(line.split()[1] for line in out.splitlines() if line.startswith("objectSid:"))

    def take_share(self) -> str:
        """A share of its own for a test module (made when the DC was provisioned: Samba's RPC
        server does not reliably learn a share added later), its root's ACL as corp's."""
        name = next(n for n in EXTRA_SHARES if n not in self.taken)
        self.taken.add(name)
        self.acl_on(name, "/", f"{self.domain}\\Administrator:ALLOWED/OI|CI/FULL",
                    f"{self.domain}\\svc:ALLOWED/OI|CI/READ",
                    f"{self.domain}\\Domain Users:ALLOWED/0x0/0x00100020")  # fmt: skip
        return name

    def share_acl(self, share: str, *aces: tuple[str, str, str]) -> None:
        """Replace the share's own permissions (the "Share Permissions" tab): (kind, name,
        rights) in this order, e.g. ("ALLOWED", "HR", "READ"); names become SIDs (sharesec
        does not resolve names)."""
        spec = ",".join(f"{self.sid(who) if not who.startswith('S-1-') else who}:{kind}/0/{rights}"
                        for kind, who, rights in aces)  # fmt: skip
        proc = subprocess.run(["sharesec", share, "-s", self.conf, "-R", spec],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"sharesec {share} {spec}: {proc.stdout} {proc.stderr}")

    def acl_on(self, share: str, rel: str, *aces: str) -> None:
        """``acl`` on a file of another share."""
        spec = ",".join(f"ACL:{a}" for a in aces)
        proc = subprocess.run(["smbcacls", "-s", self.conf, f"//{self.ip}/{share}", rel,
                               "-U", self.admin, "--set", spec],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        if proc.returncode:
            raise RuntimeError(f"smbcacls {share} {rel} {spec}: {proc.stdout} {proc.stderr}")

    def put_on(self, share: str, rel: str, content: str | bytes) -> None:
        """``put`` on another share (into an existing folder)."""
        local = self.folder / "upload.tmp"
        local.write_bytes(content.encode() if isinstance(content, str) else content)
        folder, _, name = rel.rpartition("/")
        self.run_on(share, (f'cd "{folder}"; ' if folder else "") + f'put "{local}" "{name}"')

    def run_on(self, share: str, command: str) -> None:
        """An smbclient command on a share, as the Administrator."""
        proc = subprocess.run(["smbclient", "-s", self.conf, f"//{self.ip}/{share}", "-U",
                               self.admin, "-c", command],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if proc.returncode or "NT_STATUS" in proc.stdout:
            raise RuntimeError(f"{share}: {command}: {proc.stdout} {proc.stderr}")

    def disable(self, user: str) -> None:
        self.tool("user", "disable", user)

    def enable(self, user: str) -> None:
        self.tool("user", "enable", user)

    def expire(self, user: str) -> None:
        """The account expires now (accountExpires)."""
        self.tool("user", "setexpiry", user, "--days=0")

    def lock_out(self, user: str) -> None:
        """Failed logons until the DC locks the account out (lockoutThreshold is 3 here)."""
        for _ in range(6):
            proc = subprocess.run(["smbclient", "-s", self.conf, f"//{self.ip}/corp", "-U",
                                   f"{self.domain}\\{user}%wrong-password", "-c", "ls"],
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            if "NT_STATUS_ACCOUNT_LOCKED_OUT" in proc.stdout + proc.stderr:
                return
        raise RuntimeError(f"{user} was not locked out")

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
        # every socket in the DC's folder: the RPC helpers smbd starts on demand (srvsvc) are
        # found through ncalrpc dir, which another DC's leftover helpers must never answer
        text = text.replace("[global]\n", f"[global]\n\tpid directory = {folder}\n"
                            f"\tncalrpc dir = {folder}/ncalrpc\n", 1)  # fmt: skip
        (folder / "ncalrpc").mkdir()
        # an account the server refuses its IPC$ share (so its share permissions via SRVSVC)
        extra = ""
        for name in EXTRA_SHARES:
            (folder / name).mkdir(mode=0o755)
            extra += f"\n[{name}]\n\tpath = {folder / name}\n\tread only = No\n"
        conf.write_text(text + f"\n[corp]\n\tpath = {share}\n\tread only = No\n" + extra
                        + f"\n[IPC$]\n\tinvalid users = CORP\\{NO_RPC_ACCOUNT}\n")  # fmt: skip
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
        # the share's own permissions, explicit (Samba's default, Everyone FULL). Windows gives
        # them (SRVSVC level 502) to Administrators, Server Operators and Power Users; Samba
        # reads them from share_info.tdb as the caller, so only root gets them reliably: the
        # service account is granted them by that file being open to it (what adding it to
        # Power Users does on Windows)
        for name in ("corp", *EXTRA_SHARES):
            dc.share_acl(name, ("ALLOWED", "S-1-1-0", "FULL"))
        (folder / "state" / "share_info.tdb").chmod(0o666)
        dc.tool("domain", "passwordsettings", "set", "--account-lockout-threshold=3")
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
    # smbd's RPC helpers (samba-dcerpcd, rpcd_*) run outside samba's process group
    subprocess.run(["pkill", "-KILL", "-f", f"--configfile={dc.folder}/"], capture_output=True)
    _remove(dc.ip, dc.folder)
