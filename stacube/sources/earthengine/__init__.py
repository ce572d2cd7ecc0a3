"""Earth Engine sources: the value (``source``), the ``ee`` client (``client``), the image-to-Item
conversion (``catalog``), the backend (``backend``)."""
