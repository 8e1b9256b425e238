from pathlib import Path

import pytest

from index.permissions.rules import RuleBook
from workers.settings import ConfigError, load_settings, parse_share, prepare_data_dir
from workers.sources import open_sources


def test_defaults_are_embedded_and_offline(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path)
    assert s.embedded and s.broker_url is None and s.vlm_url is None
    assert s.catalog == f"sqlite:///{tmp_path / 'catalog.db'}"
    assert s.qdrant_path == tmp_path / "qdrant"
    assert s.api_host == "127.0.0.1"
    assert s.languages == ("eng", "jpn")


def test_environment_overrides_toml_and_flags_override_environment(
    tmp_path: Path, monkeypatch
) -> None:
    config = tmp_path / "shareindex.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\nembedding_batch_size = 8\napi_port = 9000\nchunk_max_tokens = 100\n'
    )
    monkeypatch.setenv("SHAREINDEX_EMBEDDING_BATCH_SIZE", "32")
    monkeypatch.setenv("SHAREINDEX_QDRANT_API_KEY", "s3cret")
    s = load_settings(str(config), api_port=9100)
    assert (s.embedding_batch_size, s.api_port, s.chunk_max_tokens) == (32, 9100, 100)
    assert s.qdrant_api_key is not None and s.qdrant_api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_shares_from_env_json(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SHAREINDEX_SHARES", f'{{"docs": "{tmp_path}"}}')
    assert load_settings(data_dir=tmp_path).shares == {"docs": tmp_path.resolve()}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"embedding_batch_size": 0}, "invalid setting embedding_batch_size"),
        ({"api_port": 70000}, "invalid setting api_port"),
        ({"shares": {"docs": "/nonexistent/dir"}}, "is not a directory"),
        ({"shares": {"bad name!": "/tmp"}}, "share name"),
        ({"embedding_device": "gpu0"}, "embedding_device"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_settings_are_one_clear_line(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(**overrides)
    assert "\n" not in str(info.value)


def test_missing_or_malformed_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_settings(str(bad))


def test_parse_share() -> None:
    assert parse_share("docs=/srv/docs") == ("docs", Path("/srv/docs"))
    for bad in ("docs", "=/x", "docs="):
        with pytest.raises(ConfigError, match="NAME=PATH"):
            parse_share(bad)


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not usable"):
        prepare_data_dir(load_settings(data_dir=blocker / "sub"))


def test_processes_starting_together_all_find_the_data_dir_usable(tmp_path: Path) -> None:
    """A watcher and a worker start together on a new data dir (docker compose does that): each
    checks it can write there, and neither may see the other's check as a failure."""
    from tests.helpers import run_together

    settings = load_settings(data_dir=tmp_path / "data")

    def start() -> None:
        for _ in range(200):
            prepare_data_dir(settings)

    assert run_together(start, 6) == []
    assert not any(p.name.startswith(".write-test") for p in (tmp_path / "data").iterdir())


def test_an_smb_server_takes_its_own_account_else_the_default(tmp_path: Path) -> None:
    config = tmp_path / "shareindex.toml"
    config.write_text('[smb_hosts."FS2.corp.test"]\nusername = "CORP\\\\svc2"\npassword = "two"\n'
                      '[smb_hosts."fs3:4445"]\nusername = "svc3@corp.test"\npassword = "three"\n')  # fmt: skip
    settings = load_settings(str(config), smb_username="CORP\\svc", smb_password="one",
                             shares={"a": "smb://fs2.corp.test/a", "b": "smb://fs1/b"})  # fmt: skip
    assert settings.smb_account("smb://fs2.corp.test/a/x") == ("CORP\\svc2", "two")
    assert settings.smb_account("smb://fs3:4445/c") == ("svc3@corp.test", "three")
    assert settings.smb_account("smb://fs3/c") == ("CORP\\svc", "one")  # another port
    assert settings.smb_account("smb://fs1/b") == ("CORP\\svc", "one")
    # each share's reader (what parse processes read with) carries its server's account
    readers = {n: s.reader for n, s in open_sources(settings, RuleBook()).items()}
    assert {n: (r.username, r.password) for n, r in readers.items()} == {  # type: ignore[attr-defined]
        "a": ("CORP\\svc2", "two"), "b": ("CORP\\svc", "one")}  # fmt: skip
    assert "two" not in repr(settings) and "two" not in repr(readers)  # secret in logs


def test_empty_smb_and_directory_variables_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMB_USERNAME", "SMB_PASSWORD", "DIRECTORY_URL", "DIRECTORY_CA_FILE"):
        monkeypatch.setenv(f"SHAREINDEX_{name}", "")
    settings = load_settings()
    assert settings.smb_username is None and settings.smb_password is None
    assert settings.directory_url is None and settings.directory_ca_file is None
