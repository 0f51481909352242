"""Settings: TOML plus environment, every problem named by its key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mailer import config
from mailer.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mailer.toml"
    path.write_text(text, "utf-8")
    return path


def test_defaults_without_any_file() -> None:
    settings = config.build({}, env={})
    assert settings.smtp.port == 25
    assert settings.blast.default_cta_url == config.WHITE_HOUSE_CONTACT
    assert settings.import_.check_deliverability is False


def test_values_from_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[smtp]\nhost = "relay.example.org"\nport = 587\ntls = "starttls"\n'
        "[import]\ncheck_deliverability = true\n",
    )
    settings = config.load(path, env={})
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.tls) == (
        "relay.example.org",
        587,
        "starttls",
    )
    assert settings.import_.check_deliverability is True
    assert settings.source == str(path)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[smtp]\nprot = 25\n", "smtp.prot", "unknown setting"),
        ("[smpt]\nport = 25\n", "smpt", "unknown section"),
        ('[smtp]\nport = "twenty-five"\n', "smtp.port", "must be an integer"),
        ("[smtp]\nport = true\n", "smtp.port", "must be an integer"),
        ('[smtp]\ntls = "ssl"\n', "smtp.tls", "must be one of"),
        ('[smtp]\ntimeout = "soon"\n', "smtp.timeout", "must be a number"),
        (
            '[import]\ncheck_deliverability = "yes"\n',
            "import.check_deliverability",
            "must be true or false",
        ),
        ("[sender]\naddress = 42\n", "sender.address", "must be a string"),
        ("smtp = 3\n", "smtp", "must be a table"),
        ("[sending]\nconnections = -1\n", "sending.connections", "must be 0 (automatic) or more"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    assert info.value.key == key
    assert problem in str(info.value)
    assert str(path) in str(info.value)


def test_invalid_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[smtp\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path, env={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.toml", env={})


def test_environment_overrides_file_and_is_typed(tmp_path: Path) -> None:
    path = write(tmp_path, '[smtp]\npassword = "in-file"\nport = 25\n')
    env = {
        "MAILER_SMTP_PASSWORD": "from-env",
        "MAILER_SMTP_PORT": "2525",
        "MAILER_IMPORT_CHECK_DELIVERABILITY": "on",
    }
    settings = config.load(path, env=env)
    assert settings.smtp.password == "from-env"
    assert settings.smtp.port == 2525
    assert settings.import_.check_deliverability is True


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"smtp\.port \(from \$MAILER_SMTP_PORT\)"):
        config.build({}, env={"MAILER_SMTP_PORT": "lots"})


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[web]\nport = 9000\n")
    assert config.load(None, env={"MAILER_CONFIG": str(path)}).web.port == 9000


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///data/m.db"\n[templates]\ndir = "tpl"\n')
    settings = config.load(path, env={})
    assert settings.database.url == f"sqlite:///{tmp_path / 'data' / 'm.db'}"
    assert settings.templates_path() == tmp_path / "tpl"


def test_require_names_the_missing_key() -> None:
    settings = config.build({"sender": {"address": "a@example.org"}}, env={})
    with pytest.raises(ConfigError) as info:
        settings.require("sender.address", "web.base_url")
    assert info.value.key == "web.base_url"


def test_short_secret_is_refused() -> None:
    settings = config.build({"security": {"secret_key": "short"}}, env={})
    with pytest.raises(ConfigError, match="at least 32"):
        settings.require("security.secret_key")


def test_example_file_documents_every_setting_and_is_current() -> None:
    text = (REPO / "config.example.toml").read_text("utf-8")
    assert text == config.example_toml(), (
        "regenerate: python -m mailer.config > config.example.toml"
    )
    parsed = tomllib.loads(text)
    for key, default, doc in config.all_keys():
        section, name = key.split(".")
        assert parsed[section][name] == default
        assert f"# {doc}" in text
    config.build(parsed, env={})  # the example itself is a valid configuration
