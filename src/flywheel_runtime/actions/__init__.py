"""A GitHub Actions service double: what ARC 0.14.0's controller and listener call, offline.

ARC's controller and listener (``github.com/actions/scaleset`` v0.2.0) need
GitHub: a registration token, an admin JWT, a runner scale set, message
sessions with a long-polled queue of JobAssigned / JobStarted / JobCompleted
messages, JIT runner configs, runner removal.  This double answers all of it
(stdlib only), keeps a job queue per label that people and tests drive
(``flywheel-runtime actions queue|jobs|release``), and gives runner stand-ins
an API to take a job and report it started and completed.  See
:mod:`flywheel_runtime.actions._server` for every path.

    with ActionsDouble() as double:          # loopback, any free port
        double.config_url("my-org")          # githubConfigUrl for a chart or a client
        double.queue("tinyland-nix", count=2, hold=True)
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use: the CLI imports this package's _cli on every command
# (the runner's job hooks included), and only `actions ...` needs the server.
_EXPORTS = {
    "URL_ENV": "_client", "ActionsClient": "_client", "ActionsUnreachableError": "_client", "clear_state": "_client",
    "find_url": "_client", "state_file": "_client", "write_state": "_client",
    "ActionsDouble": "_double", "STATES": "_service", "decode_jit": "_tokens",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
