"""Plain values to DynamoDB's attribute values and back (the low-level client's `{"S": ...}` format).

Numbers are written as their decimal text and read back as `int` when they have no fraction or exponent, else as
`float`; `None` is `NULL`. Enough for audit entries, lock and marker items, without boto3's `Decimal` types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["Item", "from_attribute", "from_item", "number", "string", "to_attribute", "to_item"]

Item = dict[str, dict[str, Any]]


def string(value: str) -> dict[str, Any]:
    return {"S": value}


def number(value: int | float) -> dict[str, Any]:
    return to_attribute(value)


def to_attribute(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store the number {value!r}")
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": to_item(value)}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB: {value!r}")


def to_item(values: Mapping[str, Any]) -> Item:
    return {str(k): to_attribute(v) for k, v in values.items()}


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    [(kind, value)] = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        return _number(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return from_item(value)
    if kind == "L":
        return [from_attribute(v) for v in value]
    if kind in {"SS", "BS"}:
        return sorted(value)
    if kind == "NS":
        return sorted(_number(v) for v in value)
    if kind == "B":
        return value
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def from_item(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {k: from_attribute(v) for k, v in item.items()}
