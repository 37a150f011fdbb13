"""ARGUMENTS as the arcpy tools take them: ``name value;name value`` (a value table written
as text), checked against the names a tool or model accepts. Training, AutoDL and the
inference tools all parse with this one rule. Standard library only.

A value is read as the type of its default: booleans as true/false/1/0/yes/no (``argument_bool``,
the one rule for what reads as true), lists as ``[1, 2, 3]`` or ``1,2,3``. An unknown name is
an error listing the valid ones.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Dict, List, Mapping, Union

from .errors import InputError

PARAMETER = "ARGUMENTS"


def parse_arguments(text: Union[str, Mapping[str, Any], None], accepted: Mapping[str, Any],
                    model_type: str = "") -> Dict[str, Any]:
    """The accepted arguments with defaults filled in; raises InputError("ARGUMENTS", …)."""
    values = dict(accepted)
    given = dict(text) if isinstance(text, Mapping) else _split(text or "")
    for name, raw in given.items():
        key = name.strip().lower()
        if key not in accepted:
            what = f" for {model_type}" if model_type else ""
            raise InputError(PARAMETER, f"unknown argument {name!r}{what}; valid arguments: "
                                       f"{', '.join(sorted(accepted))}")
        values[key] = _convert(key, raw, accepted[key])
    return values


def given_names(text: Union[str, Mapping[str, Any], None]) -> set:
    """The argument names ARGUMENTS gives (lower case), as ``parse_arguments`` reads them."""
    given = dict(text) if isinstance(text, Mapping) else _split(text or "")
    return {str(name).strip().lower() for name in given}


def _split(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for entry in re.split(r"[;\n]", text):
        entry = entry.strip()
        if not entry:
            continue
        parts = re.split(r"\s+|=", entry, maxsplit=1)
        if len(parts) < 2 or not parts[1].strip():
            raise InputError(PARAMETER, f"{entry!r} has no value; write 'name value' pairs separated by ';' "
                                       "(e.g. 'class_balancing true;mixup false')")
        out[parts[0]] = parts[1].strip()
    return out


TRUE = ("true", "1", "yes", "y", "t")
FALSE = ("false", "0", "no", "n", "f")


def argument_bool(value: Any, name: str, parameter: str = PARAMETER) -> bool:
    """A boolean given as text or as a value; the one rule for what reads as true (ARGUMENTS,
    command-line flags, emd values)."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in TRUE:
            return True
        if low in FALSE + ("",):
            return False
        raise InputError(parameter, f"{name} {value!r} is not true or false")
    return bool(value)


def _convert(name: str, raw: Any, default: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if isinstance(default, bool):
            if not text:
                raise ValueError
            return argument_bool(text, name)
        if isinstance(default, int):
            return int(float(text)) if float(text).is_integer() else _bad()
        if isinstance(default, float):
            return float(text)
        if isinstance(default, (list, tuple)):
            return _as_list(text)
        if default is None:  # no type to go by: a number, a list, a boolean or the text
            return _literal(text)
        return text
    except (ValueError, SyntaxError):
        kind = ("true or false" if isinstance(default, bool) else "a list such as [1, 2]"
                if isinstance(default, (list, tuple)) else type(default).__name__)
        raise InputError(PARAMETER, f"{name} {text!r} is not {kind}") from None


def _bad():
    raise ValueError


def _as_list(text: str) -> List[Any]:
    if not text.startswith(("[", "(")):
        text = f"[{text}]"
    value = ast.literal_eval(text)
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _literal(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
