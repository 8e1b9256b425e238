"""``shareindex acl explain`` for a file of an SMB share: the user's SIDs with their names, each
ACE of the file's DACL with its SID's name, the one that decided, and the verdict (Windows' own,
and the index's)."""

from __future__ import annotations

from typing import Any

from index.acl import Principal, RuleBook, may_read
from index.ntacl import parse_descriptor, windows_reads
from ingest import smbfs
from workers.directory import LdapDirectory
from workers.settings import ConfigError, Settings
from workers.sources.explain import format_rules, matching_rules
from workers.sources.smb import SmbShare

WELL_KNOWN = {
    "S-1-1-0": "Everyone", "S-1-5-11": "Authenticated Users", "S-1-5-18": "SYSTEM",
    "S-1-3-0": "CREATOR OWNER", "S-1-3-1": "CREATOR GROUP", "S-1-3-4": "OWNER RIGHTS",
    "S-1-5-32-544": "BUILTIN\\Administrators", "S-1-5-32-545": "BUILTIN\\Users",
    "S-1-5-32-546": "BUILTIN\\Guests", "S-1-5-7": "ANONYMOUS LOGON",
}  # fmt: skip


def _name(sid: str, directory: LdapDirectory | None) -> str:
    if sid in WELL_KNOWN:
        return WELL_KNOWN[sid]
    name = directory.name_of(sid) if directory is not None else None
    return name or sid


def explain_smb(settings: Settings, share: str, url: str, path: str, user: str | None,
                directory: LdapDirectory | None) -> dict[str, Any]:  # fmt: skip
    """The explanation of ``path`` on the SMB share ``share`` for ``user``."""
    if user and directory is None:
        raise ConfigError("explaining an SMB file for a user needs the directory "
                          "(SHAREINDEX_DIRECTORY_URL)")  # fmt: skip
    source = SmbShare(share, url, *settings.smb_account(url), RuleBook(settings.rules()),
                      settings.share_permissions.get(share), settings.share_permissions_missing)  # fmt: skip
    sd = parse_descriptor(smbfs.security_descriptor(source.smb, path))
    sids = directory.sids_of(user) if user and directory is not None else ()
    token = set(sids)
    steps, deciding = [], None
    for n, ace in enumerate(sd.dacl or (), 1):
        matches = ace.applies and ace.reads and ace.sid in token
        if matches and deciding is None:
            deciding = n
        steps.append({
            "ace": n, "type": "allow" if ace.allow else "deny", "sid": ace.sid,
            "name": _name(ace.sid, directory), "mask": f"0x{ace.mask:08x}", "reads": ace.reads,
            "inherited": ace.inherited, "applies_to_file": ace.applies,
            "user_holds_it": ace.sid in token, "decided": matches and deciding == n,
        })  # fmt: skip
    access, _ = source.permissions(path)  # the descriptor's tokens with the ACL rules applied
    acl, acl_deny = sorted(access.allow), sorted(access.deny)
    windows = windows_reads(sd, token)
    index = may_read(Principal(user, sids=tuple(sids)), access.allow, access.deny)
    if sd.dacl is None:
        why = "no DACL: everyone may read"
    elif deciding is None:
        why = "no ACE grants this user read access"
    else:
        why = (
            f"ACE {deciding} decided ({steps[deciding - 1]['type']} {steps[deciding - 1]['name']})"
        )
    return {
        "share": share, "path": path, "user": user,
        "user_sids": [{"sid": s, "name": _name(s, directory)} for s in sids],
        "owner": sd.owner and {"sid": sd.owner, "name": _name(sd.owner, directory)},
        "dacl": None if sd.dacl is None else steps,
        "skipped_aces": list(sd.skipped),
        "windows_allows": windows, "rules": matching_rules(settings, share, path),
        "index_allows": index, "acl": acl, "acl_deny": acl_deny,
        "verdict": ("CAN read" if index else "cannot read") + f": {why}"
        + ("" if index == windows else " (the ACL rules changed Windows' answer)"),
    }  # fmt: skip


def format_smb_explanation(report: dict[str, Any]) -> str:
    lines = [f"{report['share']}:{report['path']}",
             f"user: {report['user'] or '(anonymous)'}"]  # fmt: skip
    for s in report["user_sids"]:
        lines.append(f"  {s['sid']}  {s['name']}")
    if report["dacl"] is None:
        lines.append("DACL: none (everyone)")
    else:
        lines.append("DACL, in order:")
        for a in report["dacl"]:
            mark = "=>" if a["decided"] else ("  " if a["applies_to_file"] else "--")
            lines.append(f"{mark} {a['ace']:>2} {a['type']:<5} {a['name']:<30} {a['mask']} "
                         f"{'read' if a['reads'] else 'no read'}"
                         f"{' inherited' if a['inherited'] else ''}"
                         f"{' (children only)' if not a['applies_to_file'] else ''}")  # fmt: skip
    if report["skipped_aces"]:
        lines.append("skipped (cannot be evaluated): " + ", ".join(report["skipped_aces"]))
    lines.extend(format_rules(report["rules"]))
    lines.append(f"windows: {'allows' if report['windows_allows'] else 'refuses'}")
    lines.append(f"index tokens: allow {report['acl']}, deny {report['acl_deny']}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)
