"""Helpers for the export format tests (RCNN_Masks, Labeled_Tiles, MultiLabeled_Tiles,
Imagenet, CycleGAN, Panoptic_Segmentation, ROTATION_ANGLE, PROCESS_ITEMS_SEPARATELY).

Everything here reads an export back the way a user would and computes what it
should hold independently of the engine (pixel-centre tests with shapely rather
than the engine's rasterizer). No QGIS.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
import shapely
import shapely.affinity
from affine import Affine

import engine_helpers as h


@dataclass
class Line:
    """One map.txt line: its tokens as paths under the export folder."""

    stem: str
    image: Path
    label: Optional[Path]  # last token when there are two or more
    tokens: List[str]


def map_entries(out) -> List[Line]:
    """Every map.txt line (CRLF checked by engine_helpers.map_lines)."""
    entries = []
    for line in h.map_lines(out):
        assert line.endswith(" "), f"map.txt line {line!r} lacks its trailing space"
        tokens = line.split()
        image = Path(out, *tokens[0].split("\\"))
        label = Path(out, *tokens[-1].split("\\")) if len(tokens) > 1 else None
        entries.append(Line(image.stem, image, label, tokens))
    return entries


def read(path) -> Tuple[np.ndarray, Affine]:
    with rasterio.open(path) as src:
        return src.read(), src.transform


def pixel_centres(t: Affine, w: int, h_: int) -> Tuple[np.ndarray, np.ndarray]:
    """Map coordinates of every pixel centre of a (possibly rotated) chip, (h, w) each."""
    rows, cols = np.mgrid[0:h_, 0:w]
    cx, cy = cols + 0.5, rows + 0.5
    return t.a * cx + t.b * cy + t.c, t.d * cx + t.e * cy + t.f


def centre_mask(geom, t: Affine, w: int, h_: int) -> np.ndarray:
    """(h, w) True where the pixel centre lies inside ``geom`` (the rasterization rule)."""
    xs, ys = pixel_centres(t, w, h_)
    return shapely.contains_xy(geom, xs, ys)


def centre_class_raster(geoms, values, t: Affine, w: int, h_: int, dtype="uint8") -> np.ndarray:
    """Class-value raster by pixel centres (features must not overlap)."""
    out = np.zeros((h_, w), dtype=dtype)
    for g, v in zip(geoms, values):
        out[centre_mask(g, t, w, h_)] = v
    return out


def chip_polygon(t: Affine, w: int, h_: int):
    return shapely.Polygon([t * (0, 0), t * (w, 0), t * (w, h_), t * (0, h_)])


def raster_box(transform: Affine = h.T0, width: int = h.SIZE, height: int = h.SIZE):
    return h.pix_box(0, 0, width, height, transform)


def to_chip_pixels(geom, t: Affine):
    inv = ~t
    return shapely.affinity.affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])


def xml_objects(path) -> List[Tuple[str, Tuple[float, float, float, float]]]:
    """(name text, box) of every <object> of a VOC file."""
    root = ET.parse(path).getroot()
    out = []
    for obj in root.findall("object"):
        b = obj.find("bndbox")
        out.append((obj.find("name").text,
                    tuple(float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return out


def instance_ids_check(masks: np.ndarray, expected: Sequence[np.ndarray], where: str) -> List[int]:
    """Check an RCNN instance mask file (bands, h, w) against the expected per-feature
    pixel masks: ids 1..N, each id in one band only, each id's pixels equal to one
    expected mask (a bijection). Returns the band of each expected mask."""
    assert masks.dtype.kind == "u", f"{where}: instance ids must be unsigned integers, got {masks.dtype}"
    ids = sorted(int(v) for v in np.unique(masks) if v != 0)
    expected = [m for m in expected if m.any()]
    assert ids == list(range(1, len(expected) + 1)), f"{where}: ids {ids}, expected 1..{len(expected)}"
    bands_of = []
    unmatched = list(range(len(expected)))
    for i in ids:
        in_bands = [b for b in range(masks.shape[0]) if (masks[b] == i).any()]
        assert len(in_bands) == 1, f"{where}: instance {i} is split over bands {in_bands}"
        got = masks[in_bands[0]] == i
        hit = [k for k in unmatched if np.array_equal(expected[k], got)]
        assert hit, (f"{where}: instance {i} ({got.sum()} px) matches no feature's rasterization "
                     f"(sizes {[int(expected[k].sum()) for k in unmatched]})")
        unmatched.remove(hit[0])
        bands_of.append((hit[0], in_bands[0]))
    return [b for _, b in sorted(bands_of)]


def write_vrt(path, items: Sequence[Tuple[str, int, int, int, int]], width: int, height: int, bands: int,
              transform: Affine, crs, dtype: str = "Byte") -> str:
    """A mosaic VRT of GeoTIFFs: items are (file name relative to the VRT, dst col, dst row, w, h)."""
    gt = ", ".join(repr(float(v)) for v in (transform.c, transform.a, transform.b, transform.f, transform.d,
                                            transform.e))
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{crs.to_wkt()}</SRS>".replace("&", "&amp;"),
             f"  <GeoTransform>{gt}</GeoTransform>"]
    for b in range(1, bands + 1):
        parts.append(f'  <VRTRasterBand dataType="{dtype}" band="{b}">')
        for name, col, row, w, h_ in items:
            parts += ["    <SimpleSource>",
                      f'      <SourceFilename relativeToVRT="1">{name}</SourceFilename>',
                      f"      <SourceBand>{b}</SourceBand>",
                      f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h_}"/>',
                      f'      <DstRect xOff="{col}" yOff="{row}" xSize="{w}" ySize="{h_}"/>',
                      "    </SimpleSource>"]
        parts.append("  </VRTRasterBand>")
    parts.append("</VRTDataset>")
    Path(path).write_text("\n".join(parts) + "\n")
    return str(path)


def padded_window(data: np.ndarray, col: int, row: int, w: int, h_: int, fill=0) -> np.ndarray:
    """data[:, row:row+h, col:col+w] with anything outside the array set to ``fill`` (any offsets)."""
    out = np.full((data.shape[0], h_, w), fill, dtype=data.dtype)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + h_, data.shape[1]), min(col + w, data.shape[2])
    if r1 > r0 and c1 > c0:
        out[:, r0 - row:r1 - row, c0 - col:c1 - col] = data[:, r0:r1, c0:c1]
    return out


def files_under(folder) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
