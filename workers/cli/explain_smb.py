"""``shareindex acl explain`` for a file of an SMB share, in Windows' two layers: the share's own
permissions, then the file's DACL. For each, its ACEs with their SIDs' names and the one that
decided for the user; then which layer decided, and the verdict (Windows' own, and the
index's). A user the directory marks disabled, locked out or expired reads nothing."""

from __future__ import annotations

from typing import Any

from index.permissions.directory import InactiveAccount, LdapDirectory
from index.permissions.ntfs import SecurityDescriptor, parse_descriptor, windows_reads
from index.permissions.readers import Principal, may_read
from ingest import smbfs
from workers.cli.explain import format_rules, matching_rules
from workers.settings import ConfigError, Settings
from workers.sources.smb import SmbShare

WELL_KNOWN = {
    "S-1-1-0": "Everyone", "S-1-5-11": "Authenticated Users", "S-1-5-18": "SYSTEM",
    "S-1-3-0": "CREATOR OWNER", "S-1-3-1": "CREATOR GROUP", "S-1-3-4": "OWNER RIGHTS",
    "S-1-5-32-544": "BUILTIN\\Administrators", "S-1-5-32-545": "BUILTIN\\Users",
    "S-1-5-32-546": "BUILTIN\\Guests", "S-1-5-7": "ANONYMOUS LOGON",
    "S-1-5-32-547": "BUILTIN\\Power Users", "S-1-5-32-549": "BUILTIN\\Server Operators",
}  # fmt: skip


def _name(sid: str, directory: LdapDirectory | None) -> str:
    if sid in WELL_KNOWN:
        return WELL_KNOWN[sid]
    name = directory.name_of(sid) if directory is not None else None
    return name or sid


def _layer(
    sd: SecurityDescriptor | None, token: set[str], directory: LdapDirectory | None
) -> dict[str, Any]:
    """One layer's ACEs in order, the one that decided for ``token``, and its verdict."""
    if sd is None:
        return {"dacl": None, "deciding": None, "allows": None}
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
    return {"dacl": None if sd.dacl is None else steps, "deciding": deciding,
            "allows": windows_reads(sd, token), "skipped_aces": list(sd.skipped)}  # fmt: skip


def _why(layer: dict[str, Any], what: str) -> str:
    if layer["dacl"] is None:
        return f"{what}: no DACL, everyone may read"
    if layer["deciding"] is None:
        return f"{what}: no ACE grants this user read access"
    step = layer["dacl"][layer["deciding"] - 1]
    return f"{what}: ACE {layer['deciding']} decided ({step['type']} {step['name']})"


def explain_smb(settings: Settings, source: SmbShare, path: str, user: str | None,
                directory: LdapDirectory | None) -> dict[str, Any]:  # fmt: skip
    """The explanation of ``path`` on the SMB share ``source`` for ``user``."""
    if user and directory is None:
        raise ConfigError("explaining an SMB file for a user needs the directory "
                          "(SHAREINDEX_DIRECTORY_URL)")  # fmt: skip
    share = source.name
    sd = parse_descriptor(smbfs.security_descriptor(source.smb, path))
    found = source.share_descriptor()
    shared = source.share_access()  # what the index's points carry for the share
    inactive = None
    try:
        sids = directory.sids_of(user) if user and directory is not None else ()
    except InactiveAccount as exc:
        sids, inactive = (), str(exc)
    token = set(sids)
    file_layer, share_layer = _layer(sd, token, directory), _layer(found.descriptor, token, directory)
    if found.descriptor is None:  # unknown: the setting decides, as for the index
        share_layer["allows"] = settings.share_permissions_missing == "ntfs"
    access, _ = source.permissions(path)  # the descriptor's tokens with the ACL rules applied
    windows = inactive is None and bool(share_layer["allows"]) and bool(file_layer["allows"])
    index = inactive is None and may_read(Principal(user, sids=tuple(sids)), access.allow,
                                          access.deny, shared.access)  # fmt: skip
    if inactive:
        decided_by, why = "account", inactive
    elif not share_layer["allows"]:
        decided_by = "share"
        why = (_why(share_layer, "share permissions") if found.descriptor is not None
               else f"share permissions unknown: {shared.warning}")  # fmt: skip
    else:
        decided_by = "ntfs"
        why = _why(file_layer, "NTFS")
        if found.descriptor is not None and file_layer["allows"]:
            why = f"{_why(share_layer, 'share permissions')}; {why}"
        elif found.descriptor is None:
            why += " (share permissions unknown: NTFS alone decides)"
    return {
        "share": share, "path": path, "user": user, "account": inactive or "active",
        "user_sids": [{"sid": s, "name": _name(s, directory)} for s in sids],
        "owner": sd.owner and {"sid": sd.owner, "name": _name(sd.owner, directory)},
        "share_permissions": {
            "origin": found.origin, "problem": found.problem, "warning": shared.warning,
            "dacl": share_layer["dacl"], "allows": share_layer["allows"],
            "acl": sorted(shared.access.allow), "acl_deny": sorted(shared.access.deny),
        },
        "dacl": file_layer["dacl"], "skipped_aces": file_layer.get("skipped_aces", []),
        "ntfs_allows": file_layer["allows"], "decided_by": decided_by,
        "windows_allows": windows, "rules": matching_rules(settings, share, path),
        "index_allows": index, "acl": sorted(access.allow), "acl_deny": sorted(access.deny),
        "verdict": ("CAN read" if index else "cannot read") + f": {why}"
        + ("" if index == windows else " (the ACL rules changed Windows' answer)"),
    }  # fmt: skip


def _ace_lines(dacl: list[dict[str, Any]]) -> list[str]:
    return [f"{'=>' if a['decided'] else ('  ' if a['applies_to_file'] else '--')} {a['ace']:>2} "
            f"{a['type']:<5} {a['name']:<30} {a['mask']} {'read' if a['reads'] else 'no read'}"
            f"{' inherited' if a['inherited'] else ''}"
            f"{' (children only)' if not a['applies_to_file'] else ''}" for a in dacl]  # fmt: skip


def format_smb_explanation(report: dict[str, Any]) -> str:
    lines = [f"{report['share']}:{report['path']}",
             f"user: {report['user'] or '(anonymous)'}"]  # fmt: skip
    if report["account"] != "active":
        lines.append(f"account: {report['account']}")
    for s in report["user_sids"]:
        lines.append(f"  {s['sid']}  {s['name']}")
    layer = report["share_permissions"]
    if layer["dacl"] is not None:
        lines.append(f"share permissions (from the {layer['origin']}), in order:")
        lines += _ace_lines(layer["dacl"])
    elif layer["origin"] == "unknown":
        lines.append(f"share permissions: unknown: {layer['warning']}")
    else:
        lines.append("share permissions: no DACL (everyone)")
    if report["dacl"] is None:
        lines.append("NTFS DACL: none (everyone)")
    else:
        lines.append("NTFS DACL, in order:")
        lines += _ace_lines(report["dacl"])
    if report["skipped_aces"]:
        lines.append("skipped (cannot be evaluated): " + ", ".join(report["skipped_aces"]))
    lines.extend(format_rules(report["rules"]))
    share_word = {True: "allow", False: "refuse", None: "unknown"}[layer["allows"]]
    ntfs_word = {True: "allows", False: "refuses", None: "unknown"}[report["ntfs_allows"]]
    lines.append(f"windows: {'allows' if report['windows_allows'] else 'refuses'} "
                 f"(share permissions {share_word}, NTFS {ntfs_word}; decided by "
                 f"{report['decided_by']})")  # fmt: skip
    lines.append(f"index tokens: share allow {layer['acl']}, deny {layer['acl_deny']}; "
                 f"file allow {report['acl']}, deny {report['acl_deny']}")  # fmt: skip
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)
