"""Who a user of a Windows file server is: their SIDs from Active Directory (or any LDAP directory
with ``objectSid`` and ``tokenGroups``), looked up at query time, so that a change of group
membership in the directory applies at once (within ``directory_cache_s``), without touching the
index.

A user is named ``alice``, ``CORP\\alice`` or ``alice@corp.example``; the SIDs are the user's
own, every group's (nested groups and the primary group included: ``tokenGroups``), plus Everyone
and Authenticated Users. The service account binds with a simple bind over TLS (``ldaps://``, or
``ldap://`` with StartTLS).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from typing import Any

from index.permissions.ntfs import AUTHENTICATED_USERS_SID, EVERYONE_SID, parse_sid

log = logging.getLogger(__name__)


class UnknownPrincipal(LookupError):
    """The user is not in the directory (never searched as "everyone")."""


class InactiveAccount(UnknownPrincipal):
    """The directory has the user, but the account may not log on: disabled, locked out or
    expired. It resolves to no principal, as the file server refuses its logon."""


class DirectoryUnavailable(RuntimeError):
    """The directory cannot be reached or refuses the service account."""


class LdapDirectory:
    def __init__(self, url: str, username: str | None, password: str | None, *,
                 ca_file: str | None = None, tls_verify: bool = True,
                 base_dn: str | None = None, cache_s: float = 300) -> None:  # fmt: skip
        self.url = url
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.tls_verify = tls_verify
        self.base_dn = base_dn
        self.cache_s = cache_s
        self._conn: Any = None
        self._lock = threading.Lock()
        #: user -> (when, the SIDs; or why the account may not log on)
        self._sids: dict[str, tuple[float, tuple[str, ...] | str]] = {}
        self._names: dict[str, str | None] = {}
        if not tls_verify:
            log.warning("the directory's TLS certificate is not verified (directory_tls_verify "
                        "= false): anyone on the network path could answer as the directory")  # fmt: skip

    # -- lookups ---------------------------------------------------------------------------
    def sids_of(self, user: str) -> tuple[str, ...]:
        """The user's SID, every group's, Everyone and Authenticated Users; UnknownPrincipal
        when the directory has no such user, InactiveAccount (a kind of it) when the account is
        disabled, locked out or expired: it resolves to no principal, as the server refuses it."""
        now = time.monotonic()
        cached = self._sids.get(user.lower())
        if cached and now - cached[0] < self.cache_s:
            if isinstance(cached[1], str):
                raise self._inactive(user, cached[1])
            return cached[1]
        dn, own = self._find_user(user)
        # a BASE search: AD computes msDS-User-Account-Control-Computed (the lockout) only there
        found = self._search(dn, "(objectClass=*)", ["tokenGroups", *_STATE], scope_base=True)
        raw = found[0]["raw_attributes"] if found else {}
        inactive = account_state(raw, time.time())
        if inactive:  # cached as well: a change applies within cache_s, as group changes do
            self._sids[user.lower()] = (now, inactive)
            raise self._inactive(user, inactive)
        values = raw.get("tokenGroups", [])
        sids = (own, *sorted({_sid(v) for v in values}), EVERYONE_SID, AUTHENTICATED_USERS_SID)
        self._sids[user.lower()] = (now, sids)
        return sids

    def _inactive(self, user: str, why: str) -> InactiveAccount:
        return InactiveAccount(f"the account {user!r} is {why} in the directory {self.url}: "
                               "it may read nothing")  # fmt: skip

    def name_of(self, sid: str) -> str | None:
        """The account name of a SID (``acl explain``), None when the directory has none."""
        if sid not in self._names:
            found = self._search(self._base(), f"(objectSid={sid})", ["sAMAccountName"])
            raw = found[0]["raw_attributes"].get("sAMAccountName") if found else None
            self._names[sid] = raw[0].decode() if raw else None
        return self._names[sid]

    def _find_user(self, user: str) -> tuple[str, str]:
        """A user by sAMAccountName (``DOMAIN\\name`` or ``name``), or by a sign-in name
        (``name@domain``): its userPrincipalName or mail first, else the account name before
        the @. Two accounts for one name is no user: never the wrong person's documents."""
        name = user.split("\\", 1)[-1]
        found: list[dict[str, Any]] = []
        if "@" in name:
            wanted = _escape(name)
            query = f"(&(objectClass=user)(|(userPrincipalName={wanted})(mail={wanted})))"
            found = self._search(self._base(), query, ["objectSid"])
        if not found:
            query = f"(&(objectClass=user)(sAMAccountName={_escape(name.split('@', 1)[0])}))"
            found = self._search(self._base(), query, ["objectSid"])
        if not found:
            raise UnknownPrincipal(f"no user {user!r} in the directory {self.url}")
        if len({str(e["dn"]) for e in found}) > 1:
            raise UnknownPrincipal(f"{user!r} names more than one account in the directory "
                                   f"{self.url}")  # fmt: skip
        entry = found[0]
        return str(entry["dn"]), _sid(entry["raw_attributes"]["objectSid"][0])

    # -- the connection --------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # dropped by the directory: nothing to release
                conn.unbind()

    def _base(self) -> str:
        if self.base_dn:
            return self.base_dn
        conn = self._connection()
        contexts = conn.server.info.other.get("defaultNamingContext") if conn.server.info else None
        if not contexts:
            raise DirectoryUnavailable(
                f"{self.url} names no defaultNamingContext: set directory_base_dn"
            )
        self.base_dn = str(contexts[0])
        return self.base_dn

    def _search(
        self, base_dn: str, query: str, attributes: list[str], *, scope_base: bool = False
    ) -> list[dict[str, Any]]:
        from ldap3 import BASE, SUBTREE

        for attempt in (1, 2):  # a connection the directory dropped is opened again once
            conn = self._connection()
            try:
                with self._lock:
                    conn.search(base_dn, query, BASE if scope_base else SUBTREE,
                                attributes=attributes)  # fmt: skip
                    return [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
            except Exception as exc:
                self._conn = None
                if attempt == 2:
                    raise DirectoryUnavailable(f"{self.url}: {exc}") from exc
        return []

    def _connection(self) -> Any:
        from ldap3 import Connection, Server, Tls

        with self._lock:
            if self._conn is not None and self._conn.bound:
                return self._conn
            tls = Tls(validate=ssl.CERT_REQUIRED if self.tls_verify else ssl.CERT_NONE,
                      ca_certs_file=self.ca_file)  # fmt: skip
            secure = self.url.startswith("ldaps://")
            server = Server(self.url, use_ssl=secure, tls=tls, get_info="DSA", connect_timeout=10)
            try:
                conn = Connection(server, user=self.username, password=self.password,
                                  receive_timeout=15, raise_exceptions=True)  # fmt: skip
                conn.open()
                if not secure:
                    conn.start_tls()
                conn.bind()
            except Exception as exc:
                raise DirectoryUnavailable(f"cannot bind to {self.url}: {exc}") from exc
            self._conn = conn
            return conn


#: the attributes that say whether an account may log on
_STATE = ["userAccountControl", "msDS-User-Account-Control-Computed", "lockoutTime",
          "accountExpires"]  # fmt: skip
_UF_ACCOUNTDISABLE, _UF_LOCKOUT = 0x2, 0x10
_NEVER = {0, 0x7FFFFFFFFFFFFFFF}
_FILETIME_EPOCH = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01


def account_state(raw: dict[str, Any], now: float) -> str | None:
    """Why the account may not log on ("disabled", "locked out", "expired since ..."), from its
    raw attributes; None when it may."""

    def number(name: str) -> int | None:
        values = raw.get(name) or []
        try:
            return int(values[0]) if values else None
        except (TypeError, ValueError):
            return None

    if (number("userAccountControl") or 0) & _UF_ACCOUNTDISABLE:
        return "disabled"
    computed = number("msDS-User-Account-Control-Computed")
    if computed is not None:
        if computed & _UF_LOCKOUT:
            return "locked out"
    elif (number("lockoutTime") or 0) > 0:  # no computed lockout: a lockout is assumed to hold
        return "locked out"
    expires = number("accountExpires")
    if expires is not None and expires not in _NEVER:
        at = expires / 1e7 - _FILETIME_EPOCH
        if at <= now:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
            return f"expired (since {when})"
    return None


def _sid(value: Any) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode("latin-1")
    if raw.startswith(b"S-1-"):
        return raw.decode()
    return parse_sid(raw)[0]


def _escape(value: str) -> str:
    """RFC 4515 escaping of a value in a search filter."""
    out = []
    for ch in value:
        out.append(f"\\{ord(ch):02x}" if ch in "*()\\\x00" else ch)
    return "".join(out)
