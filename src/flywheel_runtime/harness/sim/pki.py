"""A throwaway PKI for the sim cluster, made with the ``openssl`` CLI.

One CA signs the apiserver's serving certificate and a client certificate per
component identity, so RBAC sees the same users a kubeadm cluster has
(system:kube-scheduler, system:kube-controller-manager, an admin in
system:masters).  EC P-256 keys keep generation fast on small machines.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from flywheel_runtime.errors import BuildError

CLIENTS = {
    "admin": ("flywheel-admin", "system:masters"),
    "scheduler": ("system:kube-scheduler", None),
    "controller-manager": ("system:kube-controller-manager", None),
    "kwok": ("flywheel-kwok", "system:masters"),
    "provisioner": ("flywheel-provisioner", "system:masters"),
}


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"openssl {args[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path), cwd=path.parent)


def _sign(d: Path, name: str, subject: str, ext: str) -> None:
    _key(d / f"{name}.key")
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "30", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    (d / f"{name}.csr").unlink()
    (d / f"{name}.ext").unlink()


def make_pki(d: Path) -> None:
    """Write ca, apiserver, per-client certs and the service-account key pair into ``d``."""
    if shutil.which("openssl") is None:
        raise BuildError("openssl is not installed; it is needed to make the sim cluster's certificates")
    d.mkdir(parents=True, exist_ok=True)
    _key(d / "ca.key")
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=flywheel-sim-ca", "-days", "30",
             "-sha256", "-out", "ca.crt", cwd=d)
    _sign(d, "apiserver", "/CN=kube-apiserver",
          "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
          "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
          "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n")
    for name, (cn, org) in CLIENTS.items():
        subject = f"/CN={cn}" + (f"/O={org}" if org else "")
        _sign(d, name, subject, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                                "extendedKeyUsage=clientAuth\n")
    _key(d / "sa.key")
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """A kubeconfig for ``user`` (a key of :data:`CLIENTS`) with absolute file paths."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: flywheel\n  cluster:\n    server: {server}\n"
        f"    certificate-authority: {pki / 'ca.crt'}\n"
        f"users:\n- name: {user}\n  user:\n    client-certificate: {pki / (user + '.crt')}\n"
        f"    client-key: {pki / (user + '.key')}\n"
        f"contexts:\n- name: flywheel\n  context:\n    cluster: flywheel\n    user: {user}\n"
        "current-context: flywheel\n"
    )
