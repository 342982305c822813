"""The data sources behind one interface: the demo, BigEarthNet-S2 v1.0 and BigEarthNet-S2 v2.0 (reBEN).

A source knows what its archive holds, how its labels, splits and exclusions are read, whether it has
reference maps, and which band statistics normalise it; the label and encode stages ask it, never a version.
"""

from benloss.data.sources.base import DATASETS, Source, open_source

__all__ = ["DATASETS", "Source", "open_source"]
