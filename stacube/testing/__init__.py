"""Test equipment shipped in the package, as ``icechunk.testing`` is: a synthetic sample collection
(an ArcticDEM-like mosaic, Sentinel-2-like granules and seasons), its loopback servers (COGs with HTTP
Range support, a STAC API), a fault proxy, and a loopback Earth Engine REST emulator that the real
earthengine-api client talks to. The demo, the tests and the benchmarks use it; its one server
dependency (``rangehttpserver``) is small, and the demo needs it, so it stays in a plain install."""
