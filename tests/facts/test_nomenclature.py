"""The official BigEarthNet-19 nomenclature and its conversion from the 43 CORINE labels."""

import numpy as np
import pytest

from benloss.facts.nomenclature import (
    UnknownLabelError,
    classes,
    conversion,
    multi_hot,
    original_labels,
    to_bigearthnet19,
)

# Hand-written from the BigEarthNet-19 nomenclature (Sumbul et al. 2021): original labels -> 19 classes.
CASES = [
    (["Continuous urban fabric", "Discontinuous urban fabric"], ["Urban fabric"]),
    (["Airports", "Burnt areas"], []),
    (["Sea and ocean", "Coastal lagoons", "Estuaries"], ["Marine waters"]),
    (["Peatbogs", "Water bodies", "Coniferous forest", "Mixed forest", "Transitional woodland/shrub"],
     ["Coniferous forest", "Mixed forest", "Transitional woodland, shrub", "Inland wetlands", "Inland waters"]),
    (["Natural grassland", "Sparsely vegetated areas", "Bare rock"],
     ["Natural grassland and sparsely vegetated areas"]),
    (["Rice fields", "Vineyards", "Annual crops associated with permanent crops", "Pastures"],
     ["Arable land", "Permanent crops", "Pastures"]),
    (["Moors and heathland", "Sclerophyllous vegetation", "Salines", "Intertidal flats"],
     ["Moors, heathland and sclerophyllous vegetation", "Coastal wetlands"]),
]  # fmt: skip


@pytest.mark.parametrize(("original", "expected"), CASES)
def test_conversion_matches_hand_table(original, expected):
    assert to_bigearthnet19(original) == expected


def test_official_order_not_alphabetical():
    assert classes()[0] == "Urban fabric"
    assert classes()[-1] == "Marine waters"
    assert list(classes()) != sorted(classes())
    assert original_labels()[0] == "Continuous urban fabric"
    assert original_labels()[-1] == "Sea and ocean"


def test_sizes_and_dropped_labels():
    assert len(original_labels()) == 43
    assert len(classes()) == 19
    dropped = sorted(name for name, new in conversion().items() if new is None)
    assert dropped == sorted([
        "Road and rail networks and associated land", "Port areas", "Airports", "Mineral extraction sites",
        "Dump sites", "Construction sites", "Green urban areas", "Sport and leisure facilities", "Bare rock",
        "Burnt areas", "Intertidal flats",
    ])  # fmt: skip


def test_unknown_label_names_the_source():
    with pytest.raises(UnknownLabelError, match="patch_x: unknown BigEarthNet label"):
        to_bigearthnet19(["Mixed forest", "Lava fields"], source="patch_x")


def test_multi_hot():
    vector = multi_hot(["Marine waters", "Urban fabric"])
    assert vector.dtype == np.uint8 and vector.sum() == 2 and vector[0] == 1 and vector[18] == 1
