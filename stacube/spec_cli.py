"""``stacube spec``: a ready-made dataset's spec as JSON, to edit or hand to ``stacube cube create --spec``.

    stacube spec arcticdem --resolution 10 > dem.json
    stacube cube create cubes/dem --spec dem.json
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_args import parse_bbox

Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the spec to this file (default: stdout).")]
Chunks = Annotated[int | None, typer.Option(help="Patch size in px a side (default: the dataset's own).")]
LonLatBbox = Annotated[str, typer.Option(help="minlon,minlat,maxlon,maxlat (west > east crosses 180 degrees).")]
Project = Annotated[str | None, typer.Option(help="The Google Cloud project Earth Engine bills.")]


def _emit(spec: Any, out: Path | None) -> None:
    if out is None:
        typer.echo(json.dumps(spec.to_json(), indent=2))
    else:
        spec.save(out)
        typer.echo(f"wrote {out}", err=True)


def _chunks(size: int | None) -> dict[str, Any]:
    return {} if size is None else {"chunks": (size, size)}


def arcticdem(resolution: Annotated[int, typer.Option(help="Mosaic resolution in metres: 2, 10 or 32.")] = 32,
              chunks: Chunks = None,
              api_url: Annotated[str | None, typer.Option(help="STAC API (default: PGC's).")] = None,
              collection: Annotated[str | None, typer.Option(help="Collection (default: by resolution).")] = None,
              out: Out = None) -> None:
    """ArcticDEM mosaics (dem, datamask) on their own EPSG:3413 grid.

    Example: stacube spec arcticdem --resolution 10 > dem.json
    """
    from .datasets import PGC_STAC, arcticdem_spec

    _emit(arcticdem_spec(resolution, api_url=api_url or PGC_STAC, collection=collection, **_chunks(chunks)), out)


def sentinel2(bbox: LonLatBbox, start: Annotated[str, typer.Option(help="First day of the time axis.")] = "2017-01-01",
              end: Annotated[str | None, typer.Option(help="Last day (default: today, UTC).")] = None,
              max_cloud_cover: Annotated[float | None, typer.Option(help="Keep granules below this %.")] = 60.0,
              provider: Annotated[str, typer.Option(help="earth-search or planetary-computer.")] = "earth-search",
              api_url: Annotated[str | None, typer.Option(help="STAC API (default: the provider's).")] = None,
              collection: Annotated[str | None, typer.Option(help="Collection (default: the provider's).")] = None,
              bands: Annotated[str | None, typer.Option(help="Comma-separated subset, e.g. B04,B08,SCL.")] = None,
              resolution: Annotated[float, typer.Option(help="Metres per pixel.")] = 10.0,
              chunks: Chunks = None, out: Out = None) -> None:
    """Sentinel-2 L2A over a lon/lat box, daily, one zone per UTM zone.

    Example: stacube spec sentinel2 --bbox 11.0,47.0,11.2,47.1 --start 2024-04-01 --bands B04,B08,SCL > s2.json
    """
    from .datasets import sentinel2_l2a_spec

    extra: dict[str, Any] = {**_chunks(chunks)}
    if bands:
        extra["bands"] = tuple(b.strip() for b in bands.split(",") if b.strip())
    _emit(sentinel2_l2a_spec(parse_bbox(bbox, across_180=True), start, end, max_cloud_cover=max_cloud_cover,
                             provider=provider, api_url=api_url, collection=collection, resolution=resolution,
                             **extra), out)


def alphaearth(bbox: LonLatBbox, project: Project = None,
               years: Annotated[str | None, typer.Option(help="First and last year, e.g. 2020,2024.")] = None,
               resolution: Annotated[float, typer.Option(help="Metres per pixel.")] = 10.0,
               chunks: Chunks = None, out: Out = None) -> None:
    """Google's annual satellite embeddings (64 bands) from Earth Engine, one zone per UTM zone.

    Example: stacube spec alphaearth --bbox 11.0,47.0,11.2,47.1 --years 2020,2024 > ae.json
    """
    from .datasets import alphaearth_spec

    extra: dict[str, Any] = {**_chunks(chunks)}
    if years:
        try:
            first, last = (int(y) for y in years.split(","))
        except ValueError:
            raise ValueError(f"--years {years!r} is not two years like 2020,2024") from None
        extra["years"] = range(first, last + 1)
    _emit(alphaearth_spec(parse_bbox(bbox, across_180=True), project=project, resolution=resolution, **extra), out)


def tctrend(project: Project = None, chunks: Chunks = None, out: Out = None) -> None:
    """Tasseled-cap trend slopes (tcb, tcg, tcw) from Earth Engine on their global grid.

    Example: stacube spec tctrend > tctrend.json
    """
    from .datasets import tctrend_spec

    _emit(tctrend_spec(project=project, **_chunks(chunks)), out)


def build_spec_app(handled: Callable[[Callable[..., Any]], Callable[..., Any]]) -> typer.Typer:
    """The ``stacube spec`` commands, with the CLI's error handling (``stacube.cli.handled``).

    The commands' own docstrings are their ``--help`` text, and their options document themselves.

    Parameters
    ----------
    handled : Callable[[Callable[..., Any]], Callable[..., Any]]
        Wraps each command so that an error becomes one line and exit code 1.

    Returns
    -------
    typer.Typer
        The ``spec`` sub-app: ``arcticdem``, ``sentinel2``, ``alphaearth``, ``tctrend``.
    """
    spec_app = typer.Typer(no_args_is_help=True, help="Specs of the ready-made datasets, as JSON.")
    for name, command in (("arcticdem", arcticdem), ("sentinel2", sentinel2), ("alphaearth", alphaearth),
                          ("tctrend", tctrend)):
        spec_app.command(name)(handled(command))
    return spec_app
