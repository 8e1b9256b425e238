"""Parsing in separate processes: overlaps with embedding, and contains bad files.

Each parse process has an address-space limit (a decompression bomb hits MemoryError or dies,
not the service) and each document a time limit (a parser that hangs is killed and replaced).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import sys
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import pebble

from ingest.errors import IngestError, ParserCrashed, ParseTimeout
from ingest.models import PreparedDocument, SourceFile
from ingest.stages.chunk import ChunkOptions, DocumentChunker, HFTokenCounter
from ingest.stages.members import is_container
from ingest.stages.parse import ParseOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParseJob:
    parse: ParseOptions
    chunk: ChunkOptions
    tokenizer_file: str
    memory_mb: int


_chunker: DocumentChunker | None = None
_job: ParseJob | None = None


def _init_worker(job: ParseJob, memory_limit: bool = True) -> None:
    global _chunker, _job
    from ingest import nlp_fallback
    from workers.offline import enforce_offline

    enforce_offline()
    os.environ["OMP_THREAD_LIMIT"] = "1"  # OCR parallelism comes from workers, not threads
    if memory_limit:  # a parse process of its own: nothing here needs torch
        # spaCy (through unstructured) imports torch when it can: 1.7 s and ~180 MB per
        # process for nothing, since the strategies used here (fast, OCR by Tesseract) need
        # no model; blocked, it takes its no-torch path
        sys.modules.setdefault("torch", None)  # type: ignore[arg-type]
        limit = job.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    nlp_fallback.install()
    _chunker = DocumentChunker(HFTokenCounter(job.tokenizer_file), job.chunk)
    _job = job


def _prepare(source: SourceFile) -> PreparedDocument:
    from ingest.pipeline import prepare

    assert _chunker is not None and _job is not None, "parse worker not initialised"
    try:
        return prepare(source, _job.parse, _chunker)
    except MemoryError as exc:
        raise ParserCrashed(f"the parser exceeded the memory limit of {_job.memory_mb} MB") from exc


def _warm() -> int:
    """Import the parsers ahead of the first document (seconds of imports)."""
    import unstructured.partition.docx  # noqa: F401
    import unstructured.partition.html  # noqa: F401
    import unstructured.partition.pdf  # noqa: F401

    return 0


class Parser:
    """Turns a parse future into the prepared document or the IngestError that says why not."""

    job: ParseJob
    timeout_s: float

    def submit(self, source: SourceFile) -> Future[PreparedDocument]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def outcome(self, future: Future[PreparedDocument]) -> PreparedDocument | IngestError:
        """The prepared document, or the IngestError that says why there is none."""
        try:
            return future.result()
        except IngestError as exc:
            return exc
        except FutureTimeout:
            return ParseTimeout(
                f"parsing took longer than the limit of {self.timeout_s:g} s and was stopped"
            )
        except pebble.ProcessExpired as exc:
            return ParserCrashed(
                f"the parser process died (exit code {exc.exitcode}); memory limit {self.job.memory_mb} MB"
            )
        except MemoryError:
            return ParserCrashed(f"the parser exceeded the memory limit of {self.job.memory_mb} MB")
        except Exception as exc:  # a bug or a library failure: record it on this document only
            log.exception("unexpected error while parsing %s", future)
            return ParserCrashed(f"unexpected parser error: {type(exc).__name__}: {exc}")


class ParsePool(Parser):
    def __init__(
        self, job: ParseJob, workers: int, timeout_s: float, start: bool = True,
        container_timeout_factor: float = 10.0,
    ) -> None:  # fmt: skip
        self.job = job
        self.timeout_s = timeout_s
        #: a message or an archive is parsed with all its members: this many times the limit
        self.container_timeout_factor = container_timeout_factor
        self.workers = workers
        self._pool: pebble.ProcessPool | None = None
        if start:
            self._start(warm=True)

    def _start(self, warm: bool = False) -> pebble.ProcessPool:
        """The processes; ``warm``: their imports ahead of the first document (a service waiting
        for changes). Started for documents already waiting, each imports the parser it needs
        when it needs it: the first documents come back seconds sooner."""
        if self._pool is None:
            self._pool = pebble.ProcessPool(
                max_workers=self.workers,
                max_tasks=500,  # recycle: parsers leak
                initializer=_init_worker,
                initargs=(self.job,),
                context=multiprocessing.get_context("spawn"),
            )
            for _ in range(self.workers if warm else 0):
                self._pool.schedule(_warm)
        return self._pool

    def submit(self, source: SourceFile) -> Future[PreparedDocument]:
        timeout = self.timeout_s
        if is_container(source.path):
            timeout *= self.container_timeout_factor
        return self._start().schedule(_prepare, args=(source,), timeout=timeout)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join(timeout=10)


class InlineParser(Parser):
    """Parsing in the calling process, for Celery prefork children: they may not start
    processes of their own, and they already are the container a parse pool would be (the
    task time limits stop a hung parser, ``worker_max_memory_per_child`` replaces a leaking
    one, and a child that dies is counted against the document's attempts)."""

    def __init__(self, job: ParseJob, timeout_s: float) -> None:
        self.job = job
        self.timeout_s = timeout_s
        _init_worker(job, memory_limit=False)  # an address-space limit would starve the model

    def submit(self, source: SourceFile) -> Future[PreparedDocument]:
        future: Future[PreparedDocument] = Future()
        try:
            future.set_result(_prepare(source))
        except Exception as exc:
            if type(exc).__name__ == "SoftTimeLimitExceeded":  # the task's limit: not the parser's
                raise
            future.set_exception(exc)
        return future
