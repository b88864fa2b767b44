"""The sim cluster's PKI: real openssl, real verification."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from flywheel_runtime.harness.sim.pki import CLIENTS, kubeconfig, make_pki


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_every_cert_chains_to_the_ca_with_the_right_identity(tmp_path: Path) -> None:
    make_pki(tmp_path)
    for name in ["apiserver", *CLIENTS]:
        out = _openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / f"{name}.crt"))
        assert out.strip().endswith("OK")
    for name, (cn, org) in CLIENTS.items():
        subject = _openssl("x509", "-in", str(tmp_path / f"{name}.crt"), "-noout", "-subject")
        assert f"CN = {cn}" in subject or f"CN={cn}" in subject
        if org:
            assert org in subject
        assert "TLS Web Client Authentication" in _openssl("x509", "-in", str(tmp_path / f"{name}.crt"), "-noout",
                                                           "-ext", "extendedKeyUsage")
    san = _openssl("x509", "-in", str(tmp_path / "apiserver.crt"), "-noout", "-ext", "subjectAltName")
    assert "IP Address:127.0.0.1" in san and "DNS:kubernetes.default.svc" in san
    # The service-account pair matches: the public key derives from the private one.
    assert _openssl("pkey", "-in", str(tmp_path / "sa.key"), "-pubout") == (tmp_path / "sa.pub").read_text()
    # The scheduler and controller-manager are not cluster admins: RBAC governs them.
    assert CLIENTS["scheduler"][1] is None and CLIENTS["controller-manager"][1] is None


def test_kubeconfig_points_at_absolute_pki_paths(tmp_path: Path) -> None:
    make_pki(tmp_path / "pki")
    kubeconfig(tmp_path / "k", "https://127.0.0.1:6443", tmp_path / "pki", "scheduler")
    cfg = yaml.safe_load((tmp_path / "k").read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    user = cfg["users"][0]["user"]
    for key in ("client-certificate", "client-key"):
        assert Path(user[key]).is_absolute() and Path(user[key]).is_file()
    assert cfg["contexts"][0]["context"]["user"] == "scheduler" and cfg["current-context"] == "flywheel"
