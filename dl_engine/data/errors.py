"""Errors and warnings of the dataset layer."""

from __future__ import annotations


class DataError(ValueError):
    """Bad training input. ``parameter`` is the arcpy-style parameter name it concerns
    (IN_FOLDER, CHIP_SIZE, VALIDATION_PERCENTAGE, AUGMENTATION_PARAMETERS, ...)."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message

    def __reduce__(self):  # survives the trip back from a DataLoader worker process
        return (DataError, (self.parameter, self.message))


class DataWarning(UserWarning):
    """Something in the input was skipped or guessed; training goes on."""
