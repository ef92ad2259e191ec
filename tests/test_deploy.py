"""The deployment files in deploy/ are checked by the tools that read them:
systemd's own verifier, HAProxy's and nginx's configuration checks, and
the Kubernetes schemas (kubernetes-validate ships them; no cluster here).
The nginx proxy settings are also run for real by tests/test_load_balancer.py."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import subprocess
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloudsign.settings import Settings
from tests.helpers import REPO

DEPLOY = REPO / "deploy"


def _self_signed_pem(path: Path) -> None:
    """A certificate and key in one PEM file, as HAProxy's `crt` wants."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sign.example.kz")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.fail("systemd-analyze (Debian's systemd) is missing")
    # The paths of an installed copy, pointed at this checkout.
    unit = (DEPLOY / "systemd" / "cloudsign.service").read_text()
    unit = unit.replace("/opt/cloudsign/.venv/bin/cloudsign", str(REPO / ".venv/bin/cloudsign"))
    path = tmp_path / "cloudsign.service"
    path.write_text(unit)
    done = subprocess.run(
        [verify, "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "cloudsign.service" in line and "Failed to" not in line
    ]
    assert done.returncode == 0, done.stdout + done.stderr
    assert not problems, problems


def test_haproxy_configuration_is_valid(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    pem = tmp_path / "cloudsign.pem"
    _self_signed_pem(pem)
    cfg = (DEPLOY / "haproxy" / "cloudsign.cfg").read_text()
    path = tmp_path / "cloudsign.cfg"
    path.write_text(cfg.replace("/etc/ssl/cloudsign/cloudsign.pem", str(pem)))
    done = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nginx_configuration_is_valid(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    pem = tmp_path / "cert.pem"
    _self_signed_pem(pem)
    site = (DEPLOY / "nginx" / "cloudsign.conf").read_text()
    site = site.replace("/etc/ssl/cloudsign/fullchain.pem", str(pem))
    site = site.replace("/etc/ssl/cloudsign/privkey.pem", str(pem))
    site = site.replace("/etc/nginx/cloudsign/proxy.conf", str(DEPLOY / "nginx" / "proxy.conf"))
    site = site.replace("listen 80;", "listen 127.0.0.1:80;").replace(
        "listen 443 ssl http2;", "listen 127.0.0.1:443 ssl http2;"
    )
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ access_log off; include {tmp_path}/site.conf; }}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_kubernetes_manifests_match_the_schemas() -> None:
    documents = [
        d
        for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cloudsign.yaml").read_text())
        if d is not None
    ]
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "Ingress", "StatefulSet", "ConfigMap"} <= kinds
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The settings the pods read are the service's own (unknown keys refuse to start).
    (config,) = [d for d in documents if d["kind"] == "ConfigMap"]
    known = {f.name for f in dataclasses.fields(Settings)}
    assert set(tomllib.loads(config["data"]["cloudsign.toml"])) <= known
