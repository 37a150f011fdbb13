"""PROCESSING_MODE PROCESS_ITEMS_SEPARATELY: the source files of a mosaic (VRT)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Callable, List


def raster_items(path: str, separately: bool, log: Callable[[str], None]) -> List[str]:
    """The rasters to export: the mosaic itself, or each file it is made of."""
    if not separately:
        return [path]
    if not path.lower().endswith(".vrt") or not os.path.isfile(path):
        log("PROCESS_ITEMS_SEPARATELY: the raster is not a mosaic (VRT); it is exported as one item")
        return [path]
    base = os.path.dirname(os.path.abspath(path))
    items: List[str] = []
    for el in ET.parse(path).getroot().iter("SourceFilename"):
        name = (el.text or "").strip()
        if el.get("relativeToVRT") == "1":
            name = os.path.join(base, name)
        if name and name not in items:
            items.append(name)
    if not items:
        log("PROCESS_ITEMS_SEPARATELY: the VRT names no source file; it is exported as one item")
        return [path]
    log(f"PROCESS_ITEMS_SEPARATELY: {len(items)} item(s) in {os.path.basename(path)}")
    return items
