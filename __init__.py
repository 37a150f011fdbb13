"""Deep learning tools: QGIS plugin entry point.

The repository root is the plugin folder (installed as ``deep_learning_tools``).
Plugin code (``plugin/``, ``processing_provider/``) uses relative imports; the
engine ``dl_engine`` is a top-level package of its own (it also runs as
``python -m dl_engine`` without QGIS), so this folder is appended to ``sys.path``
for ``import dl_engine`` to work inside QGIS, qgis_process and the tests alike.
"""

import os
import sys

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
if PLUGIN_DIR not in sys.path:
    sys.path.append(PLUGIN_DIR)


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Called by QGIS to create the plugin; imports lazily."""
    from .plugin.main import DeepLearningToolsPlugin

    return DeepLearningToolsPlugin(iface)
