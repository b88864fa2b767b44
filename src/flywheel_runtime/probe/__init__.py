"""Device probes and runtime hints: what this pod really has.

Every probe takes a ``root`` (default ``/``) under which it reads ``/dev``,
``/sys``, ``/proc`` and ``/usr/share``: production and tests share that path,
so a captured tree or a crafted one (mknod) is probed exactly like a host.
NVML and the Vulkan binding are imported only when consulted.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: this runs before every job
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SCHEMA", "SCHEMA_FILE", "collect", "env_pairs", "to_env", "to_markdown", "probe_nix", "probe_runner"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from flywheel_runtime.probe import hints

        return getattr(hints, name)
    raise AttributeError(f"module 'flywheel_runtime.probe' has no attribute {name!r}")
