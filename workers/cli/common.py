"""What every command shares: the common options, the settings built from them, progress."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK, EXIT_FATAL, EXIT_FAILED_DOCS = 0, 1, 3


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the catalog and the embedded index live")
    p.add_argument("--config", help="TOML settings file (also SHAREINDEX_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")


def add_shares(p: argparse.ArgumentParser) -> None:
    p.add_argument("--share", action="append", default=[], metavar="NAME=PATH",
                   help="a share to index; may repeat (default: the shares of the config file)")  # fmt: skip


def settings_of(args: argparse.Namespace, **extra: Any) -> Any:
    from workers.settings import load_settings, parse_share

    overrides: dict[str, Any] = {"data_dir": args.data_dir, **extra}
    if getattr(args, "share", None):
        overrides["shares"] = dict(parse_share(spec) for spec in args.share)
    return load_settings(args.config, **overrides)


def need_shares(settings: Any) -> None:
    from workers.settings import ConfigError

    if not settings.shares:
        raise ConfigError("no share given: use --share NAME=PATH (or 'shares' in the config file)")


def announce_nlp() -> None:
    from ingest import nlp_fallback

    if not nlp_fallback.spacy_model_installed():
        print("note: spaCy model en_core_web_sm is not installed; unstructured's text classification "
              "uses ShareIndex's offline fallback (nothing is downloaded)", file=sys.stderr)  # fmt: skip


def progress(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="doc",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
