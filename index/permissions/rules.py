"""Share rules of the configuration (``[[acl_rules]]``), applied on top of what a source says."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from index.permissions.names import Directory
from index.permissions.readers import Access, intersect_allow


@dataclass(frozen=True)
class AclRule:
    """A rule of the configuration, on top of the filesystem. Applied in the order given, each
    matching rule as: restrict_to (keep only those principals), then grant, then deny."""

    share: str | None = None
    path: str = "*"  # fnmatch glob on the path relative to the share root; "*" matches "/"
    grant: tuple[str, ...] = ()
    restrict_to: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def matches(self, share: str, path: str) -> bool:
        return (self.share is None or self.share == share) and fnmatch.fnmatchcase(path, self.path)


class RuleBook:
    """The share rules in force, shared by every share's permission reader. The embedded
    service replaces them when the config file changes; the reconcile that follows rewrites the
    ACL of each document whose readers changed."""

    def __init__(self, rules: Sequence[AclRule] = ()) -> None:
        self._rules = tuple(rules)

    @property
    def rules(self) -> tuple[AclRule, ...]:
        return self._rules

    def replace(self, rules: Sequence[AclRule]) -> None:
        self._rules = tuple(rules)  # one assignment: readers see the old or the new tuple


def apply_rules(
    access: Access, rules: Sequence[AclRule], share: str, path: str, names: Directory
) -> Access:
    allow, deny = access.allow, access.deny
    for rule in rules:
        if not rule.matches(share, path):
            continue
        if rule.restrict_to:
            allow = intersect_allow(allow, frozenset(rule.restrict_to), names)
        allow = allow | frozenset(rule.grant)
        deny = deny | frozenset(rule.deny)
    return Access(allow, deny)

