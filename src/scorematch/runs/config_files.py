"""Reading YAML: option files (``train --config``) and a run's ``config.yaml`` — with
``yaml.safe_load`` only, and one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["is_run_dir", "load_config", "read_run_config"]


def _read_yaml(path: Path) -> Any:
    """A YAML file's content; a one-line ValueError naming the file when it does not parse."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML options file (for ``train --config``): a mapping of option names to values
    (``batch-size`` and ``batch_size`` both name the option ``batch_size``)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    loaded = _read_yaml(p)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{p}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config a run directory holds (``RUN/config.yaml``), checked for its sections."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    config = _read_yaml(path)
    needed = ("data", "standardizer", "model", "objective", "training", "sampling")
    if not isinstance(config, dict) or any(k not in config for k in needed):
        raise ValueError(f"{path} is not a scorematch run config (needs keys {', '.join(needed)})")
    return config


def is_run_dir(path: str | Path) -> bool:
    """True when ``path`` holds a run (a ``config.yaml`` written by ``train``)."""
    return (Path(path) / "config.yaml").is_file()
