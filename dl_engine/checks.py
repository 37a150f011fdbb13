"""The value rules of the configurations' ``check()`` methods (TrainConfig, AutoDLConfig,
InferConfig, ExportConfig), each raising ``InputError(PARAMETER, message)`` where the
message says what is wrong and what would be accepted.

A rule that two configurations share (VALIDATION_PERCENTAGE) is stated here once. Standard
library only: QGIS's process runs these checks before a worker starts, and the engine runs
them again at the start of every run (the command line, scripts).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

from .errors import InputError

# Bounds that QGIS's spin boxes show too (processing_provider/base.NUMBER_BOUNDS).
WHOLE_NUMBER_MINIMUM = 1  # whole_number's default: epochs, batch size, chip size…
VALIDATION_PERCENTAGE_MAXIMUM = 100.0  # excluded: nothing would be left to train on


def whole_number(parameter: str, value: Any, minimum: int = WHOLE_NUMBER_MINIMUM, what: str = "", optional: bool = False,
                 maximum: Optional[int] = None) -> Optional[int]:
    """An integer ``>= minimum`` (``<= maximum``); None passes when ``optional``. Booleans and
    fractions are refused."""
    if value is None and optional:
        return None
    number = _number(value)
    ok = (number is not None and not isinstance(value, bool) and float(number).is_integer()
          and number >= minimum and (maximum is None or number <= maximum))
    if not ok:
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        empty = ", or empty" + (f" ({what})" if what else "") if optional else ""
        raise InputError(parameter, f"must be a whole number {bounds}{empty}; got {value!r}")
    return int(number)


def positive_number(parameter: str, value: Any, accepted: str = "", optional: bool = False) -> Optional[float]:
    """A finite number above 0; None passes when ``optional``. ``accepted`` adds an example or
    what empty means."""
    if value is None and optional:
        return None
    number = _number(value)
    if number is None or isinstance(value, bool) or not (math.isfinite(number) and number > 0):
        tail = f" ({accepted})" if accepted else ""
        raise InputError(parameter, f"must be a number above 0{tail}; got {value!r}")
    return float(number)


def number_between(parameter: str, value: Any, low: float, high: float, meaning: str = "") -> float:
    """A number with ``low <= value <= high``."""
    number = _number(value)
    if number is None or isinstance(value, bool) or math.isnan(number) or not low <= number <= high:
        tail = f" ({meaning})" if meaning else ""
        raise InputError(parameter, f"must be a number from {low:g} to {high:g}{tail}; got {value!r}")
    return float(number)


def one_of(parameter: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices`` (exactly as written there)."""
    if value not in choices:
        raise InputError(parameter, f"{value!r} is not an option; accepted: {', '.join(choices)}")
    return value


def text_given(parameter: str, value: Any, what: str) -> str:
    """A non-empty text; ``what`` says what to give ("give the folder to write the model to")."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(parameter, f"nothing given; {what}")
    return value.strip()


def extent(value: Any, parameter: str = "EXTENT") -> None:
    """EXTENT: None (the whole raster), or (xmin, ymin, xmax, ymax) with xmin < xmax and ymin < ymax."""
    if value is None:
        return
    ok = (isinstance(value, (list, tuple)) and len(value) == 4
          and all(_number(v) is not None and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if not ok or not (value[0] < value[2] and value[1] < value[3]):
        raise InputError(parameter, f"{value!r} is not an area; give xmin, ymin, xmax, ymax with xmin < xmax and "
                                    f"ymin < ymax in the raster's CRS, or leave it empty for the whole raster")


def validation_percentage(value: Any, parameter: str = "VALIDATION_PERCENTAGE") -> float:
    """VALIDATION_PERCENTAGE: the share of chips held out for validation, 0 <= v < 100 (0: no
    validation set; 100 would leave nothing to train on)."""
    number = _number(value)
    if number is None or isinstance(value, bool) or math.isnan(number) or not 0.0 <= number < VALIDATION_PERCENTAGE_MAXIMUM:
        raise InputError(parameter, f"must be a percentage from 0 to below 100 (the share of chips held out for "
                                    f"validation; 0 = none); got {value!r}")
    return float(number)


def as_given(raw: Any, parsed: Any) -> Any:
    """A Processing parameter's value for its config: ``parsed`` (QGIS's parameterAsDouble/Int),
    unless the user typed a text that is no number, which QGIS accepts for an optional number and
    reads as 0; then the text itself, so the config's check says "got 'abc'", not "got 0.0"."""
    if isinstance(raw, str) and raw.strip():
        try:
            float(raw.strip())
        except ValueError:
            return raw
    return parsed


def _number(value: Any) -> Optional[float]:
    """``value`` as a float when it is a real number (not a text: a config holds typed values), else None."""
    return float(value) if isinstance(value, numbers.Real) else None
