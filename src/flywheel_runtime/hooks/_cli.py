"""CLI commands of flywheel_runtime.hooks (argparse only; heavy imports stay in handlers)."""

from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add this package's commands.  (Filled in by the hooks work.)"""
