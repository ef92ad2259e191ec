"""Token creation and provisioning: PINs reach the child on stdin only, never
its argv or environment; nothing needs the SO after initialisation; a token
appears in the token directory only complete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cloudsign.errors import ConfigurationError
from cloudsign.instance import prepare_hsm
from cloudsign.settings import Settings, load_settings
from hsm_bridge import HsmConfigurationError, HsmUnavailableError, Secret, provision, softhsm
from tests.helpers import FAST_SETTINGS

USER_PIN = Secret("user-pin-that-must-stay-on-stdin")
SO_PIN = Secret("so-pin-that-must-stay-on-stdin")


class FakeChild:
    """Stands in for `subprocess.run` in hsm_bridge.provision and keeps what
    the child would have been given."""

    def __init__(self, answer: dict[str, Any] | None = None, code: int = 0, err: str = ""):
        self.answer = answer or {
            "token_found": True,
            "master_key": True,
            "created": [],
            "legacy_so_pin": "",
        }
        self.code = code
        self.err = err
        self.calls: list[dict[str, Any]] = []

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append({"argv": argv, **kw})
        return subprocess.CompletedProcess(argv, self.code, json.dumps(self.answer), self.err)


@pytest.fixture
def child(monkeypatch: pytest.MonkeyPatch) -> FakeChild:
    fake = FakeChild()
    monkeypatch.setattr("hsm_bridge.provision.subprocess.run", fake)
    return fake


def _assert_only_on_stdin(call: dict[str, Any], *pins: Secret) -> None:
    for pin in pins:
        value = pin.reveal()
        assert not any(value in a for a in call["argv"])
        assert not any(value in v for v in call["env"].values())
        assert value in call["input"]


def test_pins_travel_on_stdin_only(child: FakeChild, monkeypatch: pytest.MonkeyPatch) -> None:
    # An operator's PIN in the environment is not inherited either.
    monkeypatch.setenv("CLOUDSIGN_HSM_PIN", USER_PIN.reveal())
    monkeypatch.setenv("UNRELATED", "kept")
    provision.provision_keys("/lib/x.so", "cloudsign", USER_PIN, legacy_so_pin=SO_PIN)
    provision.create_token("/lib/x.so", "cloudsign", USER_PIN, softhsm2_conf=Path("/s/c.conf"))
    first, second = child.calls
    _assert_only_on_stdin(first, USER_PIN, SO_PIN)
    _assert_only_on_stdin(second, USER_PIN)
    assert "CLOUDSIGN_HSM_PIN" not in first["env"] and first["env"]["UNRELATED"] == "kept"
    assert second["env"]["SOFTHSM2_CONF"] == "/s/c.conf"
    # Creation takes no SO PIN at all: the child makes its own.
    assert "so_pin" not in json.loads(second["input"])


def test_scrubbed_environment_drops_every_variable_holding_a_pin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("A_PIN", USER_PIN.reveal())
    monkeypatch.setenv("WRAPPED", f"x={SO_PIN.reveal()};y")
    monkeypatch.setenv("PLAIN", "nothing secret")
    env = provision.scrubbed_environment([USER_PIN, SO_PIN], {"SOFTHSM2_CONF": "/c"})
    assert "A_PIN" not in env and "WRAPPED" not in env
    assert env["PLAIN"] == "nothing secret" and env["SOFTHSM2_CONF"] == "/c"


def test_a_failing_child_never_shows_a_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeChild(code=1, err=f"PinIncorrect: {USER_PIN.reveal()} {SO_PIN.reveal()}")
    monkeypatch.setattr("hsm_bridge.provision.subprocess.run", fake)
    with pytest.raises(HsmUnavailableError) as err:
        provision.provision_keys("/lib/x.so", "cloudsign", USER_PIN, legacy_so_pin=SO_PIN)
    text = str(err.value)
    assert "PinIncorrect" in text
    assert USER_PIN.reveal() not in text and SO_PIN.reveal() not in text


def test_a_token_without_master_key_and_no_so_pin_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = {"token_found": True, "master_key": False, "created": [], "legacy_so_pin": ""}
    monkeypatch.setattr("hsm_bridge.provision.subprocess.run", FakeChild(answer))
    with pytest.raises(HsmConfigurationError, match="no master key"):
        provision.provision_keys("/lib/x.so", "cloudsign", USER_PIN)


def test_token_labels_fit_pkcs11(child: FakeChild) -> None:
    with pytest.raises(HsmConfigurationError):
        provision.create_token("/lib/x.so", "x" * 33, USER_PIN)
    with pytest.raises(HsmConfigurationError):
        provision.create_token("/lib/x.so", "", USER_PIN)
    assert child.calls == []


def test_a_token_appears_only_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hsm = tmp_path / "hsm"

    def made_in_staging(
        module: str, label: str, pin: Secret, *, softhsm2_conf: Path | None = None, **_: object
    ) -> provision.ProvisionReport:
        assert softhsm2_conf is not None
        staged = Path(softhsm2_conf).parent / "tokens"
        assert f"directories.tokendir = {staged}\n" in Path(softhsm2_conf).read_text()
        assert softhsm.token_directories(hsm) == []  # nothing in place yet
        (staged / "token-dir").mkdir()
        (staged / "token-dir" / "token.object").write_bytes(b"\0")
        return provision.ProvisionReport(True, True, ("cloudsign-master",), "")

    monkeypatch.setattr(softhsm, "_create_in_child", made_in_staging)
    softhsm.create_token(hsm, "/lib/x.so", "cloudsign", USER_PIN)
    assert [p.name for p in softhsm.token_directories(hsm)] == ["token-dir"]
    assert not (hsm / softhsm.STAGING_DIR).exists()

    def crashes(*_: object, **__: object) -> provision.ProvisionReport:
        raise HsmUnavailableError("HSM provisioning failed: killed")

    monkeypatch.setattr(softhsm, "_create_in_child", crashes)
    other = tmp_path / "other"
    with pytest.raises(HsmUnavailableError):
        softhsm.create_token(other, "/lib/x.so", "cloudsign", USER_PIN)
    assert softhsm.token_directories(other) == []
    assert softhsm.discard_staging(other) is True
    assert softhsm.discard_staging(other) is False


def test_later_starts_need_no_so_pin(base_settings: Settings) -> None:
    """The session's token (made by `initialise`): no SO PIN kept anywhere,
    and a start provisions with the user PIN alone, finding nothing missing."""
    hsm_dir = base_settings.hsm_dir
    assert not (hsm_dir / "so.pin").exists()
    pin = Secret(base_settings.effective_pin_file.read_text().strip())
    report = provision.provision_keys(softhsm.find_module(), base_settings.hsm_token_label, pin)
    assert report == provision.ProvisionReport(True, True, (), "")


def test_no_second_token_beside_an_existing_one(base_settings: Settings) -> None:
    """A start that finds token directories but not its label refuses: a
    new token would be a new master key, and every owner key wrapped under
    the old one lost (a worker that read the token while another process
    wrote it once took it for missing and made a second 'cloudsign')."""
    other = load_settings(
        env={}, data_dir=base_settings.data_dir, hsm_token_label="not-this-one", **FAST_SETTINGS
    )
    before = softhsm.token_directories(base_settings.hsm_dir)
    with pytest.raises(ConfigurationError, match="none labelled 'not-this-one'"):
        prepare_hsm(other)
    assert softhsm.token_directories(base_settings.hsm_dir) == before


def test_softhsm2_accepts_the_token(base_settings: Settings) -> None:
    """Made through PKCS#11 (C_InitToken, C_InitPIN), not softhsm2-util: its
    own tool sees an initialised token with a user PIN."""
    shown = subprocess.run(
        ["softhsm2-util", "--show-slots"],
        env={"SOFTHSM2_CONF": str(base_settings.hsm_dir / softhsm.CONF_NAME)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    block = shown.split(f"Label:            {base_settings.hsm_token_label}")[0]
    token_info = block.rsplit("Token info:", 1)[1]
    assert "Initialized:      yes" in token_info
    assert "User PIN init.:   yes" in token_info
