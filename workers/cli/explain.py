"""``shareindex acl explain``: why a principal can or cannot read a document."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote

from index.permissions.names import Directory
from index.permissions.posix import (
    EXECUTE,
    READ,
    AclUnreadable,
    FileAccess,
    PermissionResolver,
    explain_chain,
    posix_check,
)
from index.permissions.readers import Principal, may_read
from ingest.paths import from_os, is_text_form
from workers.settings import ConfigError, Settings


def locate(settings: Settings, target: str) -> tuple[str, str, str]:
    """(share, root, relative path) for ``SHARE:PATH`` or a path inside a configured share."""
    share, sep, rel = target.partition(":")
    if sep and share in settings.shares:  # a text form (as search results show it), or raw
        rel = rel.strip("/")
        return share, str(settings.shares[share]), rel if is_text_form(rel) else from_os(rel)
    if target.startswith("smb://"):  # a file's URL: under which share's URL it lies
        for name, root in settings.shares.items():
            prefix = str(root).rstrip("/") + "/"
            if isinstance(root, str) and target.startswith(prefix):
                return name, root, unquote(target[len(prefix) :]).strip("/")
        raise ConfigError(f"{target} is not inside a configured SMB share")
    absolute = os.path.abspath(target)
    for name, root in settings.local_shares.items():
        prefix = str(root).rstrip("/") + "/"
        if absolute.startswith(prefix):
            return name, str(root), from_os(absolute[len(prefix) :])
    raise ConfigError(
        f"{target} is not inside a configured share (give --share NAME=PATH, or SHARE:PATH)"
    )


def matching_rules(settings: Settings, share: str, path: str) -> list[dict[str, Any]]:
    """The configured ACL rules that apply to ``path`` of ``share``, numbered as configured."""
    rules = []
    for n, rule in enumerate(settings.rules(), 1):
        if rule.matches(share, path):
            effect = {"restrict_to": list(rule.restrict_to), "grant": list(rule.grant),
                      "deny": list(rule.deny)}  # fmt: skip
            rules.append({"rule": n, "share": rule.share, "path": rule.path,
                          **{k: v for k, v in effect.items() if v}})  # fmt: skip
    return rules


def _describe(obj: FileAccess, names: Directory) -> str:
    owner = names.user_token(obj.uid).split(":", 1)[1]
    group = names.group_token(obj.gid).split(":", 1)[1]
    acl = " +ACL" if obj.acl else ""
    return f"{owner}:{group} {obj.mode:04o}{acl}"


def explain(settings: Settings, target: str, principal: Principal) -> dict[str, Any]:
    share, root, path = locate(settings, target)
    resolver = PermissionResolver(settings.rules())
    names = resolver.names
    uid = names.uid(principal.user) if principal.user else None
    gids = {g for g in (names.gid(n) for n in principal.groups) if g is not None}
    steps: list[dict[str, Any]] = []
    try:
        chain = explain_chain(root, path)
    except (AclUnreadable, OSError) as exc:
        reason = str(exc) if isinstance(exc, AclUnreadable) else exc.strerror
        return {"share": share, "path": path, "principal": principal.tokens(), "steps": [],
                "filesystem_allows": False, "index_allows": False,
                "verdict": f"cannot read: the permissions cannot be read ({reason}), so nobody can"}  # fmt: skip
    for i, (label, obj) in enumerate(chain):
        is_file = i == len(chain) - 1
        ok, why = posix_check(uid, gids, obj, READ if is_file else EXECUTE)
        steps.append({"check": "read" if is_file else "traverse", "object": label,
                      "owner_group_mode": _describe(obj, names), "allowed": ok, "decided_by": why})  # fmt: skip
    fs_ok = all(step["allowed"] for step in steps)
    access, note = resolver.resolve(share, root, path)
    rules = matching_rules(settings, share, path)
    index_ok = may_read(principal, access.allow, access.deny)
    deciding = [t for t in principal.tokens() if t in access.deny] if not index_ok else []
    verdict = "CAN read" if index_ok else "cannot read"
    if deciding:
        verdict += f" (denied: {', '.join(deciding)})"
    elif not index_ok:
        verdict += " (none of its tokens is allowed)"
    return {
        "share": share,
        "path": path,
        "principal": principal.tokens(),
        "steps": steps,
        "filesystem_allows": fs_ok,
        "rules": rules,
        "acl": sorted(access.allow),
        "acl_deny": sorted(access.deny),
        "note": note,
        "index_allows": index_ok,
        "verdict": verdict,
    }


def format_explanation(report: dict[str, Any]) -> str:
    lines = [f"{report['share']}:{report['path']}", f"principal: {', '.join(report['principal'])}"]
    for step in report["steps"]:
        mark = "yes" if step["allowed"] else "NO "
        lines.append(
            f"  {mark} {step['check']:<8} {step['object']:<30} {step['owner_group_mode']:<22} {step['decided_by']}"
        )
    lines.append(f"filesystem: {'allows' if report['filesystem_allows'] else 'refuses'}")
    lines.extend(format_rules(report.get("rules", [])))
    if report.get("note"):
        lines.append(f"note: {report['note']}")
    if "acl" in report:
        lines.append(f"index tokens: allow {report['acl']}, deny {report['acl_deny']}")
    lines.append(f"verdict: {report['verdict']}")
    return "\n".join(lines)


def format_rules(rules: list[dict[str, Any]]) -> list[str]:
    return [f"rule {rule['rule']} ({rule['share'] or 'all shares'}, {rule['path']}): "
            + "; ".join(f"{k} {' '.join(v)}" for k, v in rule.items() if isinstance(v, list))
            for rule in rules]  # fmt: skip
