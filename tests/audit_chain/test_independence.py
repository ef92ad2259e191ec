"""audit_chain installs and runs without the service."""

from __future__ import annotations

import subprocess
import sys


def test_importing_audit_chain_pulls_in_no_service_package() -> None:
    code = (
        "import sys, audit_chain, audit_chain.cli\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('cloudsign', 'mobile_api', 'hsm_bridge', 'biometrics')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_help_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "audit_chain", "verify", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--min-confirmations" in result.stdout
