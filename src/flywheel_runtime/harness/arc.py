"""ARC's own CustomResourceDefinitions on a test cluster, whatever the backend.

Both backends call :func:`install_crds` once the API server answers.  The CRDs
come from a directory holding ARC's ``actions.github.com_*.yaml`` files as the
controller chart ships them: ``--arc-crds DIR``, else ``$FLYWHEEL_ARC_CRDS``,
else ``../shared/arc/gha-runner-scale-set-0.14.0/crds`` beside the repository
when that exists.  They are installed by server-side apply: the
AutoscalingRunnerSet CRD is 1.2 MB, and client-side apply's last-applied
annotation would overflow the 256 KiB annotation limit.

Only when no such directory exists does the project's hand-written subset
(``harness/crds``) stand in, and it says so: audits and tests that pass on it
prove nothing about ARC's real schema.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel_runtime.errors import SourceMissingError

if TYPE_CHECKING:
    from flywheel_runtime.kube import Client

ENV_VAR = "FLYWHEEL_ARC_CRDS"
ARC_CHART_VERSION = "0.14.0"
# The checkout's sibling ``shared/`` tree (CI has it too); not part of the package.
REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_ARC = REPO_ROOT.parent / "shared" / "arc" / f"gha-runner-scale-set-{ARC_CHART_VERSION}"
SHARED_CRDS = SHARED_ARC / "crds"
CHARTS_ENV = "FLYWHEEL_ARC_CHARTS"
SHARED_CHARTS = SHARED_ARC / "charts"
FALLBACK_CRDS = Path(__file__).with_name("crds")
FIELD_MANAGER = "flywheel-runtime"


@dataclass(frozen=True)
class CrdSource:
    """Where the CRDs come from and whether they are ARC's own."""

    directory: Path
    real: bool  # False: the hand-written fallback subset
    origin: str  # "--arc-crds", "$FLYWHEEL_ARC_CRDS", "shared", "fallback"

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("*.yaml") if p.is_file())


def crd_source(directory: str | os.PathLike[str] | None = None) -> CrdSource:
    """Resolve the CRD directory; an explicit or environment path must exist."""
    for given, origin in ((directory, "--arc-crds"), (os.environ.get(ENV_VAR) or None, f"${ENV_VAR}")):
        if given is None:
            continue
        path = Path(given)
        if not path.is_dir() or not any(path.glob("*.yaml")):
            raise SourceMissingError(f"ARC CRD directory {path} (from {origin}) does not exist or holds no *.yaml; "
                                     f"point it at ARC's crds/ (e.g. {SHARED_CRDS})")
        return CrdSource(path, True, origin)
    if SHARED_CRDS.is_dir():
        return CrdSource(SHARED_CRDS, True, "shared")
    return CrdSource(FALLBACK_CRDS, False, "fallback")


def charts_dir() -> Path | None:
    """ARC's ``charts/`` (gha-runner-scale-set and its controller chart):
    ``$FLYWHEEL_ARC_CHARTS``, else ``../shared/arc/gha-runner-scale-set-0.14.0/charts``
    beside the repository when it exists; None when neither does."""
    given = os.environ.get(CHARTS_ENV)
    if given:
        path = Path(given)
        if not (path / "gha-runner-scale-set").is_dir():
            raise SourceMissingError(f"${CHARTS_ENV}={path} holds no gha-runner-scale-set chart; point it at "
                                     f"ARC's charts/ (e.g. {SHARED_CHARTS})")
        return path
    return SHARED_CHARTS if (SHARED_CHARTS / "gha-runner-scale-set").is_dir() else None


def load_crds(source: CrdSource) -> list[dict[str, Any]]:
    """The CRD documents of ``source`` (other kinds in the files are skipped)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    for f in source.files():
        for doc in yaml.load_all(f.read_text(encoding="utf-8"), Loader=loader):  # noqa: S506 - a safe loader
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                out.append(doc)
    return out


def install_crds(kube: Client, directory: str | os.PathLike[str] | None = None, *,
                 log: Callable[[str], None] | None = None, timeout: float = 60) -> CrdSource:
    """Server-side apply ARC's CRDs and wait until they are Established."""
    say = log or (lambda msg: print(f"cluster: {msg}", file=sys.stderr, flush=True))
    source = crd_source(directory)
    crds = load_crds(source)
    if not source.real:
        say(f"ARC CRDs: no real CRD directory (--arc-crds, ${ENV_VAR} or {SHARED_CRDS}); using the project's "
            "hand-written FALLBACK subset, which is not ARC's schema")
    for crd in crds:
        kube.server_side_apply(crd, field_manager=FIELD_MANAGER)
    kube.wait_crds_established(timeout=timeout, names=[c["metadata"]["name"] for c in crds])
    say(f"ARC CRDs: {len(crds)} installed by server-side apply from {source.directory} ({source.origin})")
    return source
