"""``shareindex``: the command line. Exit codes: 0 ok, 1 fatal (one line on stderr), 3 some
documents failed (recorded; everything else was indexed).

``parser`` holds the grammar of every command; a command's module is imported when it runs
(``index``: sync, run, retry, verify, rebuild, deletes, status; ``query``: search, eval, token;
``distributed``: watch, worker, api, flower; ``acl``: explain), so the command line starts at
once and each command pays only for what it uses.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Callable, Sequence

from workers.cli.parser import build_parser
from workers.offline import enforce_offline

__all__ = ["EXIT_FAILED_DOCS", "EXIT_FATAL", "EXIT_OK", "build_parser", "main"]

EXIT_OK, EXIT_FATAL, EXIT_FAILED_DOCS = 0, 1, 3
log = logging.getLogger("shareindex")


def _fatal_errors() -> tuple[type[BaseException], ...]:
    """What ends a command with one line: imported here, after the command's own module loaded
    them anyway (the catalog, the index, the model and the directory are its dependencies)."""
    from index.catalog import CatalogError
    from index.permissions.directory import DirectoryUnavailable, UnknownPrincipal
    from index.vectors import StoreError
    from ingest.stages.model_files import ModelUnavailable
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
    module, _, name = args.handler.partition(":")
    func: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f"workers.cli.{module}"), name
    )
    try:
        return func(args)
    except _fatal_errors() as exc:
        print(f"shareindex: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("shareindex: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries(verbose: bool) -> None:
    if not verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        for name in ("sentence_transformers", "transformers", "pikepdf", "httpx", "unstructured"):
            logging.getLogger(name).setLevel(logging.ERROR)
