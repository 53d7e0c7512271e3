"""``load_settings``: REFNET_* parsing, *_FILE secrets, and ConfigError naming the offending variable."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from shared import config as config_module
from shared.config import ConfigError, Settings, load_settings


def test_defaults_from_an_empty_environment() -> None:
    s = load_settings({})
    assert s == Settings()
    assert s.port == 8000
    assert s.data_dir == ".refnet"
    assert s.log_format == "json"
    assert s.public_base_url == "http://127.0.0.1:8000"


def test_unrelated_variables_are_ignored() -> None:
    assert (
        load_settings({"PORT": "1", "REFNET": "x", "REFNET_NOT_A_SETTING": "y", "refnet_port": "1"})
        == Settings()
    )


@pytest.mark.parametrize(
    ("var", "value", "attr", "expected"),
    [
        ("REFNET_DATABASE_URL", "postgresql://u@h/db", "database_url", "postgresql://u@h/db"),
        ("REFNET_NATS_URL", "nats://127.0.0.1:4222", "nats_url", "nats://127.0.0.1:4222"),
        ("REFNET_DATA_DIR", "/var/lib/refnet", "data_dir", "/var/lib/refnet"),
        ("REFNET_PORT", "9001", "port", 9001),
        ("REFNET_LOG_FORMAT", "console", "log_format", "console"),
        ("REFNET_LOG_FORMAT", "json", "log_format", "json"),
        ("REFNET_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
        ("REFNET_SECRET_KEY", "s3cret", "secret_key", "s3cret"),
        ("REFNET_PII_MASTER_KEY", "a2V5", "pii_master_key", "a2V5"),
        ("REFNET_PII_MASTER_KEY_ID", "k7", "pii_master_key_id", "k7"),
        ("REFNET_OUTBOX_POLL_SECONDS", "0.25", "outbox_poll_seconds", 0.25),
        ("REFNET_OUTBOX_POLL_SECONDS", "2", "outbox_poll_seconds", 2.0),
        ("REFNET_TOKEN_TTL_SECONDS", "60", "token_ttl_seconds", 60),
        ("REFNET_DB_POOL_MAX", "32", "db_pool_max", 32),
        ("REFNET_ENVIRONMENT", "production", "environment", "production"),
        ("REFNET_BASE_URL", "https://refnet.example", "base_url", "https://refnet.example"),
    ],
)
def test_variables_are_parsed(var: str, value: str, attr: str, expected: object) -> None:
    s = load_settings({var: value})
    assert getattr(s, attr) == expected
    assert type(getattr(s, attr)) is type(expected)


def test_empty_value_means_unset() -> None:
    assert load_settings({"REFNET_PORT": "", "REFNET_LOG_FORMAT": ""}) == Settings()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFNET_PORT", "8123")
    assert load_settings().port == 8123


def test_overrides_win_and_none_is_ignored() -> None:
    s = load_settings({"REFNET_PORT": "9001", "REFNET_HOST": "10.0.0.5"}, port=7000, host=None)
    assert s.port == 7000
    assert s.host == "10.0.0.5"


def test_public_base_url_prefers_base_url() -> None:
    assert load_settings({"REFNET_BASE_URL": "https://x.example"}).public_base_url == "https://x.example"
    assert load_settings({"REFNET_PORT": "9001"}).public_base_url == "http://127.0.0.1:9001"


def test_settings_are_frozen() -> None:
    s = load_settings({})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


# -- *_FILE secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "attr"),
    [
        ("REFNET_SECRET_KEY", "secret_key"),
        ("REFNET_PII_MASTER_KEY", "pii_master_key"),
        ("REFNET_DATABASE_URL", "database_url"),
    ],
)
def test_secret_from_file(tmp_path: Path, var: str, attr: str) -> None:
    f = tmp_path / "secret"
    f.write_text("  value-from-file\n")
    assert getattr(load_settings({f"{var}_FILE": str(f)}), attr) == "value-from-file"


def test_direct_value_beats_file(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text("from-file")
    s = load_settings({"REFNET_SECRET_KEY": "from-env", "REFNET_SECRET_KEY_FILE": str(f)})
    assert s.secret_key == "from-env"


def test_empty_direct_value_falls_back_to_file(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_text("from-file")
    assert (
        load_settings({"REFNET_SECRET_KEY": "", "REFNET_SECRET_KEY_FILE": str(f)}).secret_key == "from-file"
    )


def test_missing_secret_file_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="REFNET_PII_MASTER_KEY_FILE") as info:
        load_settings({"REFNET_PII_MASTER_KEY_FILE": str(missing)})
    assert str(missing) in str(info.value)


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    # A directory cannot be read as text: same path as a permission error, but works as root too.
    with pytest.raises(ConfigError, match="REFNET_SECRET_KEY_FILE"):
        load_settings({"REFNET_SECRET_KEY_FILE": str(tmp_path)})


def test_secret_file_content_is_not_in_error_messages(tmp_path: Path) -> None:
    f = tmp_path / "db"
    f.write_text("postgresql://user:hunter2@db/refnet")
    assert load_settings({"REFNET_DATABASE_URL_FILE": str(f)}).database_url.endswith("@db/refnet")
    with pytest.raises(ConfigError) as info:
        load_settings({"REFNET_DATABASE_URL_FILE": str(f), "REFNET_PORT": "nine"})
    assert "hunter2" not in str(info.value)


# -- bad values ------------------------------------------------------------------------------------------

_BAD = [
    ("REFNET_PORT", "abc"),
    ("REFNET_PORT", "80.5"),
    ("REFNET_LOG_FORMAT", "xml"),
    ("REFNET_ENVIRONMENT", "staging"),
    ("REFNET_OUTBOX_POLL_SECONDS", "soon"),
    ("REFNET_TOKEN_TTL_SECONDS", "15m"),
]


@pytest.mark.parametrize(("var", "value"), _BAD)
def test_bad_values_raise_config_error(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({var: value})
    # One exception type for callers (the CLI prints it as the one-line reason); msgspec's is not leaked.
    assert not isinstance(info.value, msgspec.ValidationError)
    assert str(info.value)


@pytest.mark.parametrize(("var", "value"), _BAD)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load_settings({var: value})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        pytest.param("REFNET_PORT", "70000"),
        pytest.param("REFNET_PORT", "-1"),
    ],
)
def test_out_of_range_port_is_refused(var: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load_settings({var: value})


def test_docs_document_every_variable() -> None:
    """The configuration table (docs/configuration.md) names every REFNET_* variable load_settings reads
    (in full, so it can be grepped for), and says which secrets may come from a file."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = doc.split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    # The first column of each row: the variables it documents.
    names = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `REFNET_")]
    for field in msgspec.structs.fields(Settings):
        var = f"REFNET_{field.name.upper()}"
        rows = [cell for cell in names if f"`{var}`" in cell]
        assert len(rows) == 1, f"{var} is not in docs/configuration.md's table (or twice)"
        if field.name in config_module._SECRETS:
            assert "`_FILE`" in rows[0], f"{var}_FILE is not documented"
