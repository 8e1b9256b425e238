"""``shareindex``: the command line. Exit codes: 0 ok, 1 fatal (one line on stderr), 3 some
documents failed (recorded; everything else was indexed). One module per group of commands:
``index`` (sync, run, retry, status), ``query`` (search, eval, token), ``distributed`` (watch,
worker, api, flower), ``acl`` (explain); the work itself lives in the packages they call."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from workers.cli import acl, distributed, index, query
from workers.cli.common import EXIT_FAILED_DOCS, EXIT_FATAL, EXIT_OK
from workers.offline import enforce_offline

__all__ = ["EXIT_FAILED_DOCS", "EXIT_FATAL", "EXIT_OK", "build_parser", "main"]

log = logging.getLogger("shareindex")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shareindex", description="Keep an ACL-aware RAG index fresh from file shares."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (index, query, distributed, acl):
        group.register(sub)
    return parser


def _fatal_errors() -> tuple[type[BaseException], ...]:
    from index.catalog import CatalogError
    from index.vectors import StoreError
    from ingest.stages.model_files import ModelUnavailable
    from workers.directory import DirectoryUnavailable, UnknownPrincipal
    from workers.query.client import ServiceError
    from workers.settings import ConfigError

    return (ConfigError, CatalogError, StoreError, ModelUnavailable, ServiceError,
            UnknownPrincipal, DirectoryUnavailable)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    enforce_offline()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    _quiet_libraries(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _fatal_errors() as exc:
        print(f"shareindex: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("shareindex: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries(verbose: bool) -> None:
    import warnings

    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        for name in ("sentence_transformers", "transformers", "pikepdf", "httpx", "unstructured"):
            logging.getLogger(name).setLevel(logging.ERROR)
