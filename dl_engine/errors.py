"""The engine's two exception types, shared by every stage and by the QGIS side.

- ``InputError(parameter, message)``: bad input. ``parameter`` is the arcpy-style name the
  user set (IN_FOLDER, BATCH_SIZE, DEVICE, …); the QGIS side shows "PARAMETER: message".
- ``Canceled``: the caller asked to stop; what the run leaves behind (nothing, or a
  resumable checkpoint) is said in its message.

Standard library only: QGIS's process imports this without the engine's packages.
"""

from __future__ import annotations

import re
from typing import Optional


class InputError(ValueError):
    """Bad input, naming the parameter it concerns."""

    def __init__(self, parameter: str, message: Optional[str] = None):
        if message is None:  # one text: re-raised by torch from a DataLoader worker process
            parameter, message = _split(parameter)
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def __reduce__(self):  # survives pickling back from a DataLoader or pool process
        return (type(self), (self.parameter, self.message))


class Canceled(RuntimeError):
    """The caller asked to stop."""


class DataWarning(UserWarning):
    """Something in the input was skipped or guessed; the run goes on."""


# Earlier names, kept for scripts written against them (one release).
DataError = InputError
ExportError = InputError


def _split(text: str):
    """("PARAMETER", "message") from "… InputError: PARAMETER: message" (torch wraps an error
    raised in a DataLoader worker into a text holding the worker's traceback)."""
    text = str(text).strip()
    found = re.findall(r"(?:InputError|DataError|ExportError): ([A-Z][A-Z0-9_]*): (.+)", text)
    if found:
        return found[-1]
    m = re.match(r"([A-Z][A-Z0-9_]*): (.+)", text, re.S)
    return (m.group(1), m.group(2)) if m else ("", text)
