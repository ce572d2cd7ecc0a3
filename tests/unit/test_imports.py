import subprocess
import sys


def test_the_core_never_imports_prefect():
    code = "import stacube, stacube.cube, stacube.run, stacube.catalog, stacube.sources.stac.backend, sys; " \
           "print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
