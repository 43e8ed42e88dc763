"""A training state as plain JSON plus a flat dict of tensors (so nothing is ever unpickled): flattening
nested dicts and lists of tensors into named entries, and back."""
from __future__ import annotations

import base64

import numpy as np
import torch

__all__ = ['flatten_state', 'unflatten_state']


# ------------------------------------------------------------------------------------------------ state <-> JSON
def flatten_state(obj, tensors: dict[str, torch.Tensor] | None = None, path: str = "state"):
    """Split a nested state into a JSON-ready skeleton and a dict of tensors (for safetensors).

    Tensors become ``{"__tensor__": key}``, tuples ``{"__tuple__": [...]}``, dicts whose keys are not all
    strings ``{"__items__": [[key, value], ...]}``, NumPy arrays ``{"__ndarray__": [...], "dtype": ...}``,
    bytes ``{"__bytes__": base64}``. Anything else that JSON cannot hold raises TypeError naming its path.
    Returns ``(skeleton, tensors)``.
    """
    if tensors is None:
        tensors = {}
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}, tensors
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype), "shape": list(obj.shape)}, tensors
    if isinstance(obj, np.generic):
        return obj.item(), tensors
    if isinstance(obj, bytes):
        return {"__bytes__": base64.b64encode(obj).decode("ascii")}, tensors
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, tensors, f"{path}[{i}]")[0] for i, v in enumerate(obj)]}, tensors
    if isinstance(obj, list):
        return [flatten_state(v, tensors, f"{path}[{i}]")[0] for i, v in enumerate(obj)], tensors
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten_state(v, tensors, f"{path}.{k}")[0] for k, v in obj.items()}, tensors
        items = [[flatten_state(k, tensors, f"{path}<key>")[0], flatten_state(v, tensors, f"{path}[{k!r}]")[0]]
                 for k, v in obj.items()]
        return {"__items__": items}, tensors
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj, tensors
    raise TypeError(f"{path}: a {type(obj).__name__} cannot be stored in a checkpoint (only tensors, arrays, "
                    "numbers, strings, lists, tuples and dicts); convert it with a state_dict() first.")


def unflatten_state(skeleton, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`flatten_state`."""
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        if "__items__" in skeleton:
            return {_hashable(unflatten_state(k, tensors)): unflatten_state(v, tensors)
                    for k, v in skeleton["__items__"]}
        if "__ndarray__" in skeleton:
            return np.asarray(skeleton["__ndarray__"], dtype=skeleton["dtype"]).reshape(skeleton["shape"])
        if "__bytes__" in skeleton:
            return base64.b64decode(skeleton["__bytes__"])
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    return skeleton


def _hashable(value):
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value
