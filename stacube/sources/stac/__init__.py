"""STAC API sources: the value (``source``), the harvester (``harvest``), the backend (``backend``)."""
