"""The text of the InferenceFunction .py our packages carry (esri-formats.md §2.4).

It is an ArcGIS Python raster function for ArcGIS Pro's deep learning tools. It never runs
in this plugin: we only write it (``source``), and our reader never imports or runs a
package's Python files. In Pro it needs this plugin's ``dl_engine`` and torch on Pro's
Python path; it hands every tile to ``dl_engine.infer.raster_function.predict_tile``.
"""

from __future__ import annotations

_TEMPLATE = '''"""ArcGIS Python raster function of a model trained by Deep learning tools for QGIS.

Requirement: the plugin's ``dl_engine`` package and PyTorch must be importable from ArcGIS
Pro's Python environment (e.g. add the plugin folder to PYTHONPATH, or pip-install it into a
clone of arcgispro-py3). The model is read from the .emd beside this file; the work is done
by dl_engine.infer.raster_function.predict_tile.
"""

import json

import numpy as np


# Only pixel classification runs in ArcGIS Pro through this file today; detectors and object
# classifiers need Pro's vector-output raster function interface, which is not written yet.
SUPPORTED_IN_PRO = __SUPPORTED__


class __CLASS__:
    def __init__(self):
        self.name = "__CLASS__"
        self.description = "Deep learning tools for QGIS: applies a trained PyTorch model to imagery"
        self.emd = None

    def initialize(self, **kwargs):
        # Pro passes the emd path (or the emd JSON text) as ``model``.
        if "model" not in kwargs:
            return
        if not SUPPORTED_IN_PRO:
            raise RuntimeError("This model package applies in QGIS (Deep learning tools: Detect Objects / "
                               "Classify Objects Using Deep Learning); its use from ArcGIS Pro is not "
                               "supported yet.")
        model = kwargs["model"]
        try:
            with open(model, "r", encoding="utf-8") as f:
                self.emd = json.load(f)
            self.emd["_emd_path"] = model  # ModelFile is relative to it
        except (OSError, ValueError):
            self.emd = json.loads(model)

    def getParameterInfo(self):
        size = int(self.emd.get("ImageHeight", 256)) if self.emd else 256
        return [
            {"name": "raster", "dataType": "raster", "required": True, "displayName": "Raster",
             "description": "Input raster"},
            {"name": "model", "dataType": "string", "required": True,
             "displayName": "Input Model Definition (EMD) File", "description": "The .emd of the model"},
            {"name": "padding", "dataType": "numeric", "value": size // 4, "required": False,
             "displayName": "Padding", "description": "Pixels of context around each tile"},
            {"name": "batch_size", "dataType": "numeric", "value": 4, "required": False,
             "displayName": "Batch Size", "description": "Tiles processed at once"},
            {"name": "predict_background", "dataType": "string", "value": "True", "required": False,
             "displayName": "Predict Background", "description": "Let pixels take the NoData class"},
        ]

    def getConfiguration(self, **scalars):
        self.parameters = dict(scalars)
        height = int(self.emd["ImageHeight"])
        width = int(self.emd["ImageWidth"])
        self.padding = int(scalars.get("padding", height // 4))
        return {
            "extractBands": tuple(self.emd["ExtractBands"]),
            "padding": self.padding,
            "tx": width - 2 * self.padding,  # tile read = model input size, padding included
            "ty": height - 2 * self.padding,
            "inheritProperties": 2 | 4 | 8,
            "invalidateProperties": 2 | 4 | 8,
            "inputMask": True,
        }

    def updateRasterInfo(self, **kwargs):
        classes = self.emd.get("Classes", [])
        kwargs["output_info"]["bandCount"] = 1
        kwargs["output_info"]["pixelType"] = "u1" if max([c["Value"] for c in classes] + [0]) < 256 else "u2"
        table = {"features": [{"attributes": {"OID": i + 1, "Value": c["Value"], "Class": c["Name"],
                                              "Red": c["Color"][0], "Green": c["Color"][1],
                                              "Blue": c["Color"][2]}} for i, c in enumerate(classes)]}
        kwargs["output_info"]["rasterAttributeTable"] = json.dumps(table)
        return kwargs

    def updatePixels(self, tlc, shape, props, **pixelBlocks):
        # Imported here, not at the top, so Pro can list the parameters without torch loaded.
        from dl_engine.infer.raster_function import predict_tile

        pixels = pixelBlocks["raster_pixels"]
        mask = pixelBlocks.get("raster_mask")
        result = predict_tile(self.emd, pixels, mask=mask, shape=shape, padding=self.padding,
                              parameters=self.parameters)
        pixelBlocks["output_pixels"] = np.asarray(result).astype(props["pixelType"], copy=False)
        return pixelBlocks
'''


def source(file_name: str, kind: str = "pixel") -> str:
    """The .py text for ``InferenceFunction`` = ``file_name``; its class has the file's name.
    ``kind``: the model family (ModelSpec.kind); only pixel models run in Pro through it."""
    class_name = file_name[:-3] if file_name.endswith(".py") else file_name
    if not class_name.isidentifier():
        raise ValueError(f"inference function name {file_name!r} is not a Python identifier")
    return _TEMPLATE.replace("__CLASS__", class_name).replace("__SUPPORTED__", str(kind == "pixel"))
