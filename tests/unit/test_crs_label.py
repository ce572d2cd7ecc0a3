from odc.geo.crs import CRS

from stacube.crs import crs_label


def test_a_crs_read_back_from_wkt_is_named_by_its_code():
    # (whether odc-geo prints such a CRS as its WKT or its code depends on what the process met before:
    # it printed "EPSG:4326" after the whole suite, WKT alone; crs_label names it by its code either way)
    for code in ("EPSG:3413", "EPSG:32633", "EPSG:4326"):
        wkt = CRS(code).to_wkt()
        assert wkt.startswith(("PROJCRS", "GEOGCRS"))
        assert crs_label(CRS(wkt)) == crs_label(wkt) == crs_label(code) == code


def test_a_crs_without_a_code_is_named_by_its_name_or_proj_string():
    assert crs_label("+proj=sinu +R=6371007.181 +units=m").startswith("+proj=sinu ")
    modis = 'PROJCS["MODIS Sinusoidal",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],' \
            'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Sinusoidal"],' \
            'PARAMETER["false_easting",0],PARAMETER["false_northing",0],PARAMETER["central_meridian",0],' \
            'UNIT["metre",1]]'
    assert crs_label(modis) == "MODIS Sinusoidal"
