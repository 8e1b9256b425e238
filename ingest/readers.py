"""How a parse process reads a share's files: each share's ``Source`` hands over a picklable
reader (``workers.sources``), and the parse stages read through it. A local folder's is
``LocalReader`` (``ingest.guards``: no link followed, no FIFO opened); an SMB share's is
``ingest.smbfs.SmbReader`` (the service account's session, opened in the process that reads)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ingest.guards import FileContent, read_file_in_share


class ShareReader(Protocol):
    """Reads the files of one share; picklable (it crosses into parse processes)."""

    @property
    def location(self) -> str:
        """The share's location, as ``SourceFile.root`` names it."""

    def read(self, path: str, max_bytes: int) -> FileContent:
        """The bytes of a regular file (IngestError subclasses say why not)."""


@dataclass(frozen=True)
class LocalReader:
    """A folder on this machine (or a mount)."""

    location: str

    def read(self, path: str, max_bytes: int) -> FileContent:
        return read_file_in_share(self.location, path, max_bytes)


@dataclass(frozen=True)
class Readers:
    """The readers of the shares a process reads, by location; a location not given is a local
    folder (the parse stages' tests read folders they made)."""

    readers: tuple[ShareReader, ...] = ()

    @classmethod
    def of(cls, readers: Iterable[ShareReader]) -> Readers:
        return cls(tuple(readers))

    def read(self, location: str, path: str, max_bytes: int) -> FileContent:
        for reader in self.readers:
            if reader.location == location:
                return reader.read(path, max_bytes)
        return LocalReader(location).read(path, max_bytes)
