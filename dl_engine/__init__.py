"""Deep learning engine of the QGIS plugin: export, training and inference.

Plain Python (no qgis, no Qt) so it runs on any machine with the pinned packages,
from QGIS's Processing provider, from the command line (``python -m dl_engine``)
and on training nodes.
"""

__version__ = "0.5.0"
