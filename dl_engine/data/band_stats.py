"""Per-band statistics of an export: read from BandStatsState / AllTilesStats, merged
over several exports, or computed from the chips when an export has none (Pro 2.x).

One implementation serves export and training: ``dl_engine.export.stats.BandStats``.
"""

from ..export.stats import BandStats

__all__ = ["BandStats"]
