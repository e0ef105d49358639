"""``bench/loads_in_flight.load_depth``: how far ahead of its first use each global load is issued, on hand-made
SASS."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loads_in_flight import load_depth  # noqa: E402


def test_load_depth_counts_each_loads_distance_to_its_first_use_and_the_most_pending():
    sass = [
        ("LDG.E.64", "R4, desc[UR4][R2.64]"),  # 0: writes R4, R5
        ("LDG.E", "R6, desc[UR4][R8.64]"),     # 1: writes R6
        ("IMAD", "R10, R11, R12, RZ"),         # 2: reads neither
        ("FFMA", "R12, R5, R13, R14"),         # 3: first use of the 64-bit load (through R5): 3 ahead
        ("MOV", "R6, R7"),                     # 4: R6 overwritten before any read: not a use
        ("LDG.E", "R16, desc[UR4][R8.64]"),    # 5
        ("STG.E", "desc[UR4][R2.64], R16"),    # 6: a store reads its data: 1 ahead
    ]
    depth = load_depth(sass)
    assert depth["loads"] == 3
    assert (depth["load_use_median"], depth["load_use_mean"]) == (2, 2.0)  # distances 3 and 1
    assert depth["most_pending"] == 2  # loads 0 and 1 before instruction 3


def test_load_depth_without_loads():
    assert load_depth([("FFMA", "R1, R2, R3, R4")]) == dict(loads=0, load_use_median=None, load_use_mean=None,
                                                            most_pending=0)
