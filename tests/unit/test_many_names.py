"""load-many's COG names: two (ROI, variable) pairs never share a file (one would overwrite the other)."""

from stacube.many import _clashing_files


def test_names_that_make_one_file_name_are_found_and_distinct_ones_pass():
    assert _clashing_files(["x", "x_a"], ["a_b", "b"]) == "x_a_b.tif: ROI 'x' 'a_b' and ROI 'x_a' 'b'"
    assert _clashing_files(["Chip", "chip"], ["dem"]) == "chip.tif: ROI 'Chip' 'dem' and ROI 'chip' 'dem'"
    assert _clashing_files(["a", "b", "a_dem"], ["dem", "datamask"]) == ""
