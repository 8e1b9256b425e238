"""What every command shares: the settings built from its options, exit codes, progress."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ingest import nlp_fallback
from workers.settings import ConfigError, Settings, load_settings, parse_share


def settings_of(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {"data_dir": args.data_dir, **extra}
    if getattr(args, "share", None):
        overrides["shares"] = dict(parse_share(spec) for spec in args.share)
    return load_settings(args.config, **overrides)


def need_shares(settings: Settings) -> None:
    if not settings.shares:
        raise ConfigError("no share given: use --share NAME=PATH (or 'shares' in the config file)")


def announce_nlp() -> None:
    if not nlp_fallback.spacy_model_installed():
        print("note: spaCy model en_core_web_sm is not installed; unstructured's text classification "
              "uses ShareIndex's offline fallback (nothing is downloaded)", file=sys.stderr)  # fmt: skip


def progress(total: int, desc: str) -> Any:
    from tqdm import tqdm  # measured: 60 ms that search, status and token need not pay

    return tqdm(
        total=total,
        desc=desc,
        unit="doc",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
