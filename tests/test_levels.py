import pytest

from vertaug.anatomy import levels
from vertaug.errors import LevelNotFoundError, ParameterError


def test_v2_numbering_matches_totalsegmentator():
    t = levels.label_table("v2")
    assert (t["S1"], t["L5"], t["L1"], t["T12"], t["T1"], t["C7"], t["C1"]) == (26, 27, 31, 32, 43, 44, 50)


def test_v1_numbering_matches_totalsegmentator():
    t = levels.label_table("v1")
    assert (t["L5"], t["L1"], t["T12"], t["T1"], t["C7"], t["C1"]) == (18, 22, 23, 34, 35, 41)
    assert "S1" not in t


def test_level_names_normalise_and_neighbours():
    assert levels.normalize_level("vertebrae_l1") == "L1"
    assert levels.neighbours("L1") == ("T12", "L2")
    assert levels.neighbours("C1") == (None, "C2")
    assert levels.in_genant_range("L4") and not levels.in_genant_range("L5") and not levels.in_genant_range("T3")


def test_bad_level_and_numbering():
    with pytest.raises(LevelNotFoundError, match="not a vertebral level"):
        levels.normalize_level("L7")
    with pytest.raises(ParameterError, match="numbering"):
        levels.label_table("v3")
