"""Settings: defaults, sources, validation, and secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudsign.errors import ConfigurationError
from cloudsign.settings import Settings, load_settings


def test_defaults_are_the_embedded_ones(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path)
    assert s.effective_database_url == f"sqlite:///{(tmp_path / 'cloudsign.db').resolve()}"
    assert s.effective_public_url == "http://127.0.0.1:8080"
    assert s.uses_embedded_hsm
    assert (s.argon2_time_cost, s.argon2_memory_kib, s.totp_period_seconds) == (3, 65536, 30)


def test_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 9000\nhost = "0.0.0.0"\ndatabase_url = "postgresql://u:pw@db/x"\n')
    s = load_settings(cfg, env={"CLOUDSIGN_PORT": "9100"})
    assert (s.host, s.port) == ("0.0.0.0", 9100)
    assert "pw" not in s.describe()["database_url"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'red'\n", "unknown setting 'colour'"),
        ("port = 'eighty'\n", "port must be an integer"),
        ("port = 70000\n", "port must be 1..65535"),
        ("hsm_pin = '1234'\n", "may not be written in a file"),
        ("database_url = 'mysql://x'\n", "database_url"),
        ("ca_key_algorithm = 'gost'\n", "ca_key_algorithm"),
        ("port = \n", "cannot read config file"),
        ("auditor_chain_rpc_url = 'ws://node'\n", "auditor_chain_rpc_url"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(cfg, env={})


def test_unknown_environment_variable_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="CLOUDSIGN_PROT"):
        load_settings(env={"CLOUDSIGN_PROT": "1"})


def test_pin_is_never_printed() -> None:
    s = load_settings(env={"CLOUDSIGN_HSM_PIN": "987654-very-secret"})
    assert s.hsm_pin is not None and s.hsm_pin.reveal() == "987654-very-secret"
    for text in (repr(s), str(s), repr(s.describe()), str(s.hsm_pin)):
        assert "987654" not in text
    assert isinstance(s, Settings)


def test_the_chain_endpoint_the_auditor_page_reads(tmp_path: Path) -> None:
    """Published only when set, or in development (an anchoring endpoint may
    be private or carry an API key in its URL)."""
    private = "https://node.internal/v3/secret-key"
    prod = load_settings(env={}, data_dir=tmp_path, chain_rpc_url=private)
    assert prod.public_chain_rpc_url == ""
    public = "https://rpc.example.org"
    both = load_settings(
        env={}, data_dir=tmp_path, chain_rpc_url=private, auditor_chain_rpc_url=public
    )
    assert both.public_chain_rpc_url == public
    dev = load_settings(env={}, data_dir=tmp_path, development=True)
    assert dev.public_chain_rpc_url == "http://127.0.0.1:8545"
    dev_remote = load_settings(env={}, data_dir=tmp_path, development=True, chain_rpc_url=private)
    assert dev_remote.public_chain_rpc_url == private
    assert (
        load_settings(
            env={}, data_dir=tmp_path, development=True, chain_anvil_port=0
        ).public_chain_rpc_url
        == ""
    )
