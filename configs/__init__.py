"""Named configs. `get("quickstart", ["data.fps=8"])` returns a validated `o1.config.Config`."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence

from o1.config import Config, ConfigError, apply_overrides

NAMES = ("tiny", "quickstart", "small", "medium", "large")


def get(name: str, overrides: Sequence[str] = ()) -> Config:
    """Builds the named config and applies dotted `key=value` overrides."""
    if name not in NAMES:
        close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.0)
        raise ConfigError(f"unknown config {name!r}; choose one of {list(NAMES)} "
                          f"(closest: {close[0]!r})")
    config = importlib.import_module(f"o1.configs.{name}").get_config()
    return apply_overrides(config, overrides)
