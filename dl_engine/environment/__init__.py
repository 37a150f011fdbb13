"""The engine environment the plugin manages: an isolated virtual environment holding the
engine's pinned packages (requirements-engine.txt), with the torch build chosen for the
machine's GPU. Standard library only: QGIS's own Python imports it.

- ``location``: where the environment lives (per user; DLT_ENV_DIR overrides);
- ``requirements``: the one pinned list and its hash (an environment made for another
  list is upgraded);
- ``gpu``: nvidia-smi → the torch build (THE table);
- ``manager``: install / inspect / reset, the stamp, the report;
- ``smoke``: run inside the environment: torch and torchvision together, a convolution
  forward and backward on the device;
- ``python -m dl_engine.environment install|check|reset``: the same without QGIS.

Kept light: importing the package imports none of its modules.
"""
