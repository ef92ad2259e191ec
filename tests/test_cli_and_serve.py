"""The operator's side: `cloudsign serve` as a real process (first start
initialises the data dir, a second start reuses it) and the registry views."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from cloudsign.settings import Settings
from tests.helpers import REPO, free_port
from tests.serving import CLI, clean_env
from tests.serving import serve as _serve
from tests.serving import stop as _stop
from tests.serving import wait_ready as _wait_ready


@pytest.mark.slow
def test_serve_initialises_then_reuses_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = _serve(data, port)
    try:
        _wait_ready(proc, port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/pki/ca/root.pem", headers={"X-Request-Id": "probe-0001"}
        )
        with urllib.request.urlopen(request) as r:
            first_root = r.read()
            assert r.headers["X-Request-Id"] == "probe-0001"
    finally:
        log = _stop(proc)
    assert b"BEGIN CERTIFICATE" in first_root
    # JSON lines; the access line carries the request's id.
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    (access,) = [x for x in lines if x.get("request_id") == "probe-0001"]
    assert access["logger"] == "cloudsign.access" and "/pki/ca/root.pem" in access["message"]
    assert not [line for line in log.splitlines() if line and not line.startswith("{")], log
    assert (data / "hsm" / "tokens").is_dir()
    assert (data / "cloudsign.db").exists()
    assert oct((data / "hsm" / "user.pin").stat().st_mode & 0o777) == "0o600"
    pin = (data / "hsm" / "user.pin").read_text()
    assert pin not in log

    proc = _serve(data, port)
    try:
        _wait_ready(proc, port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/pki/ca/root.pem") as r:
            assert r.read() == first_root
    finally:
        _stop(proc)


async def _run_cli_async(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """On a thread: the in-process server shares this event loop (a blocked
    loop would hold a server transaction open that the command waits for)."""
    return await asyncio.to_thread(_run_cli, settings, *args)


def _run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(CLOUDSIGN_DATABASE_URL=settings.effective_database_url)
    return subprocess.run(
        [*CLI, "--data-dir", str(settings.data_dir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_registry_views(settings: Settings, client: object) -> None:
    from device_client.client import CloudsignClient
    from tests.helpers import enrolled

    assert isinstance(client, CloudsignClient)
    _, cred = await enrolled(client)
    listed = await _run_cli_async(settings, "registry", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = [r for r in rows if r["serial"] == cred["certificate_serial"]]
    assert len(mine) == 1 and mine[0]["status"] == "good"
    shown = await _run_cli_async(settings, "registry", "show", cred["certificate_serial"])
    assert shown.returncode == 0
    assert shown.stdout.strip() == cred["certificate"].strip()
    missing = await _run_cli_async(settings, "registry", "show", "abc")
    assert missing.returncode == 1
    evs = await _run_cli_async(settings, "events", "--json", "--limit", "500")
    assert any(
        json.loads(line)["credential_id"] == cred["credential_id"]
        for line in evs.stdout.splitlines()
    )


def test_config_command_hides_the_pin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSIGN_")}
    env["CLOUDSIGN_HSM_PIN"] = "pin-that-must-not-show"
    out = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pin-that-must-not-show" not in out
    assert json.loads(out)["hsm_pin"] == "(set)"
    bad = subprocess.run(
        [*CLI, "config"],
        env={**env, "CLOUDSIGN_NOPE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "CLOUDSIGN_NOPE" in bad.stderr


def test_serve_refuses_a_development_instance_outside_development_mode(tmp_path: Path) -> None:
    """The embedded defaults are a development instance: without
    development mode `cloudsign serve` names every reason and stops before
    it initialises anything."""
    data = tmp_path / "data"
    proc = subprocess.run(
        [*CLI, "--data-dir", str(data), "serve"],
        cwd=REPO,
        env=clean_env(CLOUDSIGN_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    for reason in ("embedded anvil", "SoftHSM2", "generated into its data dir", "not https"):
        assert reason in proc.stderr
    assert "CLOUDSIGN_DEVELOPMENT=true" in proc.stderr
    assert not data.exists()


def test_production_refusals_name_what_is_left(tmp_path: Path) -> None:
    from cloudsign.settings import load_settings

    production = {
        "chain_rpc_url": "https://chain.example.kz/rpc",
        "hsm_module": "/opt/nfast/toolkits/pkcs11/libcknfast.so",
        "hsm_pin_file": str(tmp_path / "pin"),
        "public_url": "https://sign.example.kz",
    }
    assert load_settings(env={}, data_dir=tmp_path, **production).production_refusals() == []
    softhsm = {**production, "hsm_module": "/usr/lib/softhsm/libsofthsm2.so"}
    (only,) = load_settings(env={}, data_dir=tmp_path, **softhsm).production_refusals()
    assert "SoftHSM2" in only
    plain = {**production, "public_url": "http://sign.example.kz"}
    assert load_settings(env={}, data_dir=tmp_path, **plain).production_refusals() == [
        "public_url is not https"
    ]


def test_more_workers_need_postgresql(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*CLI, "--data-dir", str(tmp_path / "data"), "serve", "--workers", "2"],
        cwd=REPO,
        env=clean_env(CLOUDSIGN_PORT=str(free_port()), CLOUDSIGN_DEVELOPMENT="true"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "needs PostgreSQL" in proc.stderr
