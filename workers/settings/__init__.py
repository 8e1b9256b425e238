"""The one settings object (its fields, in groups, in ``groups``). The only package that reads
the environment.

Sources, highest first: command-line flags, ``SHAREINDEX_*`` environment variables, the TOML file
(``--config FILE`` or ``SHAREINDEX_CONFIG``), defaults.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from index.permissions.rules import AclRule
from workers.settings.groups import (
    DEFAULT_IGNORE,
    AclRuleSetting,
    ApiToken,
    IdentitySettings,
    IndexingSettings,
    ServiceSettings,
    SmbHostAccount,
    SourceSettings,
    default_data_dir,
)

__all__ = [
    "DEFAULT_IGNORE", "AclRuleSetting", "ApiToken", "ConfigError", "Settings", "SmbHostAccount",
    "config_file_in_use", "default_data_dir", "load_settings", "parse_share", "prepare_data_dir",
]  # fmt: skip

class ConfigError(Exception):
    """Bad configuration: the message is one line an operator can act on."""


class Settings(SourceSettings, IndexingSettings, ServiceSettings, IdentitySettings, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHAREINDEX_", extra="forbid", validate_default=True
    )

    # access control
    acl_rules: list[AclRuleSetting] = Field(default_factory=list)
    api_tokens: list[ApiToken] = Field(default_factory=list)
    #: a principal given by user name alone gets that user's groups from the system database
    expand_groups: bool = True

    @model_validator(mode="after")
    def _check_names(self) -> Settings:
        names = [t.name for t in self.api_tokens]
        if len(names) != len(set(names)):
            raise ValueError("api_tokens: names must be unique")
        unknown_rule_shares = {r.share for r in self.acl_rules if r.share} - set(self.shares)
        if unknown_rule_shares and self.shares:
            raise ValueError(
                f"acl_rules name unknown shares: {', '.join(sorted(unknown_rule_shares))}"
            )
        return self

    @model_validator(mode="after")
    def _check_polling(self) -> Settings:
        unknown = set(self.polling_shares) - set(self.shares)
        if unknown and self.shares:
            raise ValueError(f"polling_shares names unknown shares: {', '.join(sorted(unknown))}")
        return self

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                "visibility_timeout_s must be longer than task_time_limit_s: Redis would "
                "deliver a running task a second time"
            )
        if self.flower_basic_auth and ":" not in self.flower_basic_auth.get_secret_value():
            raise ValueError("flower_basic_auth must be user:password")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    # -- derived -----------------------------------------------------------------------------
    @property
    def large_bytes(self) -> int:
        return int(self.large_document_mb * 1024 * 1024)

    @property
    def embedding_batch(self) -> int:
        """The batch size on the configured device (a GPU wants far larger batches)."""
        gpu = self.embedding_device.startswith("cuda")
        return self.embedding_gpu_batch_size if gpu else self.embedding_batch_size

    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def qdrant_path(self) -> Path:
        """qdrant-client's local mode (``embedded_index = "qdrant-local"``, or before 0.2)."""
        return self.data_dir / "qdrant"

    @property
    def index_path(self) -> Path:
        """The embedded index: a Qdrant Edge shard."""
        return self.data_dir / "index"

    @property
    def catalog(self) -> str:
        return self.catalog_url or f"sqlite:///{self.data_dir / 'catalog.db'}"

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang in self.ocr_languages.split("+") if lang)

    def rules(self) -> list[AclRule]:
        return [r.rule() for r in self.acl_rules]

    @property
    def local_shares(self) -> dict[str, Path]:
        return {n: r for n, r in self.shares.items() if isinstance(r, Path)}

    def smb_account(self, url: str) -> tuple[str | None, str | None]:
        """(username, password) for the server of an smb:// URL: its ``smb_hosts`` entry
        ("HOST:PORT", then "HOST"), else ``smb_username``/``smb_password``."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        hosts = {k.lower(): v for k, v in self.smb_hosts.items()}
        account = hosts.get(f"{host}:{parts.port or 445}") or hosts.get(host)
        if account is not None:
            return account.username, account.password.get_secret_value()
        password = self.smb_password.get_secret_value() if self.smb_password else None
        return self.smb_username, password

    @property
    def embedded(self) -> bool:
        """The index lives in the data dir (no Qdrant server): one process may hold it."""
        return self.qdrant_url is None

def parse_share(spec: str) -> tuple[str, Path | str]:
    """``NAME=PATH`` (or ``NAME=smb://HOST/SHARE``) from the command line."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(
            f"--share {spec!r}: expected NAME=PATH, for example --share docs=/srv/docs"
        )
    return name, path if path.startswith("smb://") else Path(path).expanduser()


def config_file_in_use(config_file: str | None) -> str | None:
    """The TOML file the settings come from: ``--config``, else ``SHAREINDEX_CONFIG``."""
    return config_file or os.environ.get("SHAREINDEX_CONFIG")


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build and validate the settings; any problem becomes one ConfigError line."""
    config_file = config_file_in_use(config_file)
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    cls: type[Settings] = Settings
    if config_file:
        config = dict(Settings.model_config, toml_file=config_file)
        cls = type("FileSettings", (Settings,), {"model_config": config})
    try:
        settings = cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {err['msg']}") from exc
    except ValueError as exc:  # a malformed TOML file
        raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
    return settings


def prepare_data_dir(settings: Settings) -> Path:
    """Create the data dir, or explain why it is unusable."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a probe of its own: processes starting together (a watcher and a worker) each check
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(f"data dir {path} is not usable: {exc.strerror or exc}") from exc
    return path
