"""Accuracy assessment (Compute Accuracy For Object Detection, Compute Accuracy For Pixel
Classification): a model's output measured against ground truth the user trusts.

- ``config``: what each tool is asked to do (dataclasses with ``check()``), standard library only;
  QGIS's process imports it to build and check a run.
- ``detection``: detections matched to ground-truth objects per class; precision, recall, F1, AP.
- ``pixels``: a confusion matrix of a classified raster against a classified raster or polygons,
  from sample points or every pixel, read block by block.
- ``tables``: the output tables' rows and CSV writing (standard library only).
- ``report``: the HTML or PDF accuracy report with precision–recall curves.

Floor 1 (README.md, "Architecture"): numpy, rasterio, shapely and matplotlib, imported by the
modules that need them, never by this package's ``__init__``.
"""
