"""The optimizer's state dict in checkpoint form: its tensors apart from its JSON scalars.

``torch.optim`` state dicts mix tensors (AdamW's moments) with plain values (step counts on some
versions, the ``param_groups``); safetensors stores only the first and the JSON sidecar only the
second, so a checkpoint splits them here and joins them again on resume.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

__all__ = ["flatten_optimizer_state", "unflatten_optimizer_state"]


def _jsonable(value: Any, where: str) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    raise ValueError(
        f"cannot store optimizer value {value!r} of type {type(value).__name__} ({where}) in a checkpoint"
    )


def flatten_optimizer_state(
    state_dict: dict[str, Any], prefix: str = "optim."
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors ``{prefix}state.<param index>.<key>`` and a
    JSON-able dict holding the non-tensor state values and the ``param_groups``."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}state.{int(index)}.{key}"] = value
            else:
                scalars.setdefault(str(int(index)), {})[key] = _jsonable(
                    value, f"state {index}.{key}"
                )
    groups = [_jsonable(g, "param_groups") for g in state_dict["param_groups"]]
    return tensors, {"state": scalars, "param_groups": groups}


def unflatten_optimizer_state(
    tensors: dict[str, Tensor], meta: dict[str, Any], prefix: str = "optim."
) -> dict[int, dict[str, Any]]:
    """Inverse of ``flatten_optimizer_state`` for the per-parameter ``state`` part."""
    state: dict[int, dict[str, Any]] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}state\.(\d+)\.(.+)$")
    for name, value in tensors.items():
        match = pattern.match(name)
        if match:
            state.setdefault(int(match.group(1)), {})[match.group(2)] = value
    for index, entries in meta.get("state", {}).items():
        state.setdefault(int(index), {}).update(entries)
    return state
