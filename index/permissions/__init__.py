"""Permissions, in one place: who may read a document, and who is asking.

The source side reads a share's permissions into readers (tokens a point carries):

- ``readers``: tokens, ``Access`` (allowed and denied), the two layers of a point (the file's and
  its share's), ``Principal`` and ``may_read`` (the decision the filter makes);
- ``posix``: a local folder's mode bits, POSIX ACLs and parent folders (``PermissionResolver``),
  and the exact POSIX check ``acl explain`` shows;
- ``ntfs``: a Windows security descriptor (binary, or SDDL) read as Windows reads it, for a file
  and for a share's own permissions;
- ``rules``: the configuration's share rules (``[[acl_rules]]``), applied on top.

The query side resolves who asks into a filter:

- ``callers``: the query API's tokens and the principal a request searches as;
- ``directory``: Active Directory (LDAP): a user's SIDs and groups, and whether the account may
  log on at all;
- ``names``: the system's users and groups (POSIX shares);
- ``filter``: ``acl_filter``, the one Qdrant filter every query path applies.
"""
