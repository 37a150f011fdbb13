"""Errors and warnings of the dataset layer."""

from __future__ import annotations

import re
from typing import Optional


class DataError(ValueError):
    """Bad training input. ``parameter`` is the arcpy-style parameter name it concerns
    (IN_FOLDER, CHIP_SIZE, VALIDATION_PERCENTAGE, AUGMENTATION_PARAMETERS, ...)."""

    def __init__(self, parameter: str, message: Optional[str] = None):
        if message is None:  # one text: re-raised by torch from a DataLoader worker process
            parameter, message = _split(parameter)
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def __reduce__(self):  # survives the trip back from a DataLoader worker process
        return (DataError, (self.parameter, self.message))


class DataWarning(UserWarning):
    """Something in the input was skipped or guessed; training goes on."""


def _split(text: str):
    """("PARAMETER", "message") from "… DataError: PARAMETER: message" (torch wraps an error
    raised in a DataLoader worker into a text holding the worker's traceback)."""
    text = str(text).strip()
    found = re.findall(r"DataError: ([A-Z][A-Z0-9_]*): (.+)", text)
    if found:
        return found[-1]
    m = re.match(r"([A-Z][A-Z0-9_]*): (.+)", text, re.S)
    return (m.group(1), m.group(2)) if m else ("", text)
