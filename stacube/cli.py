"""The ``stacube`` command line: catalogs, cubes and parcels from a shell or cron.

Every command prints a table for people or, with ``--json``, JSON for scripts on stdout. Errors
print one line on stderr (what, which value, what to do) and exit with 1; ``--verbose`` adds the
traceback. Heavy libraries are imported inside the commands, so ``stacube --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .cli_args import parse_bbox
from .cli_tables import plain
from .errors import storage_errors
from .export import check_writable, output_format, write_tile
from .spec_cli import build_spec_app

app = typer.Typer(name="stacube", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Local, versioned raster cubes built on demand from STAC and Earth Engine sources.")
catalog_app = typer.Typer(no_args_is_help=True, help="A cube's local STAC catalog: sync, search, info.")
cube_app = typer.Typer(no_args_is_help=True, help="Create, fill, read and version cubes.")
parcels_app = typer.Typer(no_args_is_help=True, help="Farm parcels and their NDVI/NDMI time series.")
app.add_typer(catalog_app, name="catalog")
app.add_typer(cube_app, name="cube")
app.add_typer(parcels_app, name="parcels")

_settings = {"verbose": False}

CubeArg = Annotated[str, typer.Argument(help="The cube: a folder path or s3://bucket/prefix.", show_default=False)]
CatalogDir = Annotated[str | None, typer.Option(help="Where the local catalogs live (default: "
                                                "$STACUBE_CATALOG_DIR, else ~/.cache/stacube/catalogs).")]
Bbox = Annotated[str | None, typer.Option(help="The ROI: minx,miny,maxx,maxy in --crs.")]
Crs = Annotated[str, typer.Option(help="CRS of --bbox.")]
Resolution = Annotated[float | None, typer.Option(help="Pixel size in --crs units: read onto this grid "
                                                  "(default: the cube zone's own grid).")]
Time = Annotated[str | None, typer.Option("--time", help="The TOI: 2024-06, 2024-06-01 or 2024-06-01/2024-06-30.")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False) -> None:
    """Local, versioned raster cubes built on demand from STAC and Earth Engine sources.

    Example: stacube cube download cubes/dem --bbox -45.1,70.2,-44.8,70.4 --json
    """
    _settings["verbose"] = verbose


def handled(command: Callable[..., Any]) -> Callable[..., Any]:
    """One clear line and exit code 1 for anything a user can cause; the traceback only with --verbose."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - every failure becomes one line (and the traceback on demand)
            if _settings["verbose"]:
                traceback.print_exc()
            error = _as_storage_error(error, kwargs)
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            message = in_cli_words(message)
            typer.echo(f"error: {type(error).__name__}: {message}", err=True)
            raise typer.Exit(1) from None

    return run


# What the Python API's errors advise, as the command line says it (the errors are shared).
CLI_WORDS = (
    ("pass toi=None for every step", "drop --time for every step"),
    ("pass toi=None", "drop --time"),
    ("create one with Cube.create(path, spec)", "create one with `stacube cube create PATH --spec FILE`"),
    ("load it lazily with chunks={'x': 2048, 'y': 2048} (or latitude/longitude on a geographic grid)",
     "load it lazily with --chunks 2048"),
    ("use Cube.open or Cube.open_or_create", "use it as it is (`stacube cube info PATH`)"),
    ("look at cube.history() again and retry", "look at `stacube cube history` again and retry"),
    ("or pass a shorter grace", "or give a shorter --grace"),
)


def in_cli_words(message: str) -> str:
    """An error message with its Python advice put in the command line's terms."""
    for api, cli in CLI_WORDS:
        message = message.replace(api, cli)
    return message


def _as_storage_error(error: Exception, arguments: dict[str, Any]) -> Exception:
    """A full disk or a read-only folder met outside a run (a tag, a rollback, a commit): named as what
    it is, with the cube the command was given, rather than as the library's many-line report."""
    from .errors import StacubeError, storage_error

    if isinstance(error, StacubeError) or not isinstance(arguments.get("cube"), str):
        return error  # stacube's own errors already name what they are about
    return storage_error(error, arguments["cube"], "cube") or error


# --- parsing ------------------------------------------------------------------------------------
OPEN_START = "1950-01-01"  # where a catalog window with an open start begins: before any Earth observation archive


def parse_time(text: str | None) -> slice | str | None:
    """``a/b`` as a slice from a to b (inclusive, as pandas; an empty or ``..`` end is open, as in STAC);
    anything else as it is (a TOI either way)."""
    if text is None:
        return None
    if "/" in text:
        start, end = (None if part.strip() in ("", "..") else part for part in text.split("/", 1))
        return slice(start, end)
    return text


def parse_roi(bbox: str | None, crs: str, resolution: float | None) -> Any:
    from odc.geo.crs import CRS
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import box

    from .errors import ROIError

    if bbox is None:
        raise ROIError("no ROI: give --bbox minx,miny,maxx,maxy (and --crs if it is not EPSG:4326)")
    try:
        the_crs = CRS(crs)
    except Exception:  # noqa: BLE001 - pyproj's many error types all mean "not a CRS"
        raise ROIError(f"--crs {crs!r} is not a CRS pyproj knows (try EPSG:4326 or EPSG:32633)") from None
    values = parse_bbox(bbox)
    if resolution is not None:
        if not (resolution > 0 and math.isfinite(resolution)):
            raise ROIError(f"--resolution {resolution!r} must be a positive, finite pixel size in {crs} units")
        return GeoBox.from_bbox(values, the_crs, resolution=resolution)
    return box(*values, the_crs)


def _open(cube: str, catalog_dir: str | None) -> Any:
    from . import Cube

    return Cube.open(cube, catalog_dir=catalog_dir)


def emit(data: Any, as_json: bool, title: str | None = None, caption: str | None = None) -> None:
    """``data`` (a dict, or a list of row dicts) as JSON or, for people, as a table on stdout whose ids
    are never cut (``stacube.cli_tables``: records instead of a table on a terminal too narrow for them)."""
    if as_json:
        typer.echo(json.dumps(plain(data), indent=2))
        return
    from .cli_tables import print_table

    print_table(data, title, caption)


def _frame_rows(frame: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "geometry"} for row in frame.to_dict("records")]


def _megabytes(row: dict[str, Any], as_json: bool) -> dict[str, Any]:
    """For people, ``bytes_written`` as MB, named for what it counts: the values' uncompressed size
    (what is stored is smaller, by the codecs' compression); JSON keeps the exact bytes."""
    if as_json or "bytes_written" not in row:
        return row
    shown = {}
    for key, value in row.items():
        if key == "bytes_written":
            key, value = "MB written (uncompressed)", f"{value / 1e6:.1f}"
        shown[key] = value
    return shown


def _report(report: Any) -> dict[str, Any]:
    return {"snapshot_id": report.snapshot_id, "run_id": report.run_id,
            "patches_written": len(report.patches_written), "patches_empty": len(report.patches_empty),
            "patches_pending": len(report.patches_pending), "patches_provisional": len(report.patches_provisional),
            "patches_already_filled": report.patches_already_filled,
            "patches_failed": {k: f.message for k, f in report.patches_failed.items()},
            "items_superseded": report.items_superseded, "items_misaligned": report.items_misaligned,
            "clipped": report.clipped, "judged_from_pixels": report.judged,
            "bytes_written": report.bytes_written, "seconds": round(report.seconds, 3)}


# --- demo ---------------------------------------------------------------------------------------
@app.command()
@handled
def demo(out: Annotated[str, typer.Option(help="Folder for the demo's outputs.")] = "demo-output") -> None:
    """Run the whole mission on a generated sample collection served on 127.0.0.1 (no internet needed).

    Example: stacube demo --out /tmp/stacube-demo
    """
    from .demo import main as run_demo

    run_demo(["--out", out])


# --- catalog ------------------------------------------------------------------------------------
def parse_filter(text: str) -> dict[str, Any]:
    """A CQL2 filter given as text (``eo:cloud_cover < 20``) or as CQL2-JSON, as CQL2-JSON."""
    import cql2

    try:
        return cql2.Expr(json.loads(text) if text.lstrip().startswith("{") else text).to_json()
    except Exception as error:  # noqa: BLE001 - cql2 reports a parse error as a bare Exception
        detail = " ".join(line.strip(" |") for line in str(error).splitlines() if line.strip(" |"))
        raise ValueError(f"--filter {text!r} is neither CQL2 text nor CQL2-JSON: {detail[:200]}") from None


def _window(bbox: str | None, crs: str, time: str | None) -> Any:
    import pandas as pd
    from odc.geo.geom import box

    from .catalog import Window
    from .lonlat import lonlat_bounds
    from .timeaxis import toi_intervals, utc_now

    area = box(*parse_bbox(bbox), crs) if bbox else None
    # right around a pole and across 180 degrees, where a projection of the corners is a sliver or the long way
    lonlat = (-180, -90, 180, 90) if area is None else (
        area.boundingbox if area.crs.geographic else lonlat_bounds(area))
    start = end = None
    if time is not None:
        intervals = toi_intervals(parse_time(time))
        start, last = intervals[0][0], intervals[-1][1]
        # an open end ("2024-01-02/"): from 1950, or up to tomorrow (nothing is published later), not the
        # limits of pandas' nanoseconds, one past which overflowed; a closed end is inclusive to the microsecond
        start = pd.Timestamp(OPEN_START) if start == pd.Timestamp.min else start
        end = (utc_now().normalize() + pd.Timedelta(days=2) if last == pd.Timestamp.max
               else last.floor("us") + pd.Timedelta(1, "us"))
    return Window(tuple(lonlat), start, end)


@catalog_app.command("sync")
@handled
def catalog_sync(cube: CubeArg, bbox: Bbox = None, crs: Crs = "EPSG:4326", time: Time = None,
                 catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """Bring the Items of the cube's source over an area and period into its local catalog.

    Only what the catalog does not hold yet is fetched; later loads there never ask the source. What is
    fetched is what a load of that area and period searches: the cube's chunks under the area (without
    --bbox, the whole globe) over the time steps the period meets (without --time, every step), and for a
    cube grouped by solar day the 12 hours either side.

    Example: stacube catalog sync cubes/s2 --bbox 11.9,46.9,12.1,47.1 --time 2024-05-01/2024-05-31
    """
    from odc.geo.geom import box

    from .errors import TOIError
    from .plan import window_for
    from .region import Region

    the_cube = _open(cube, catalog_dir)
    region = Region.of(box(*parse_bbox(bbox), crs)) if bbox else None
    if time is not None and the_cube.spec.time is None:
        raise TOIError(f"--time {time!r} given, but cube {the_cube.spec.name!r} has no time axis; drop --time")
    window = window_for(the_cube.spec, region, parse_time(time))
    added = the_cube.spec.source.sync(the_cube.catalog, window)
    emit({"items_added": added, "items_held": len(the_cube.catalog), "catalog": str(the_cube.catalog.folder)},
         as_json, "catalog sync")


@catalog_app.command("search")
@handled
def catalog_search(cube: CubeArg, bbox: Bbox = None, crs: Crs = "EPSG:4326", time: Time = None,
                   filter: Annotated[str | None, typer.Option(help="A CQL2 filter, as text ('eo:cloud_cover < 20') "
                                                              "or CQL2-JSON.")] = None,
                   limit: Annotated[int, typer.Option(help="Show at most this many Items.", min=0)] = 50,
                   catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """Items of the local catalog (never the remote source) by area, period and CQL2 filter.

    Example: stacube catalog search cubes/s2 --bbox 11.9,46.9,12.1,47.1 --time 2024-05 --filter 'eo:cloud_cover < 20'
    """
    from .errors import TOIError

    the_cube = _open(cube, catalog_dir)
    if time is not None and the_cube.spec.time is None:
        raise TOIError(f"--time {time!r} given, but cube {the_cube.spec.name!r} has no time axis; drop --time")
    window = _window(bbox, crs, time)
    cql = parse_filter(filter) if filter else None
    catalog = the_cube.catalog
    items = catalog.search(bbox=window.bbox, datetime=window.datetime_query(), filter=cql)
    rows = [{"id": i.id, "datetime": i.properties.get("datetime") or i.properties.get("start_datetime"),
             "bbox": [round(v, 5) for v in i.bbox or []]} for i in sorted(items, key=lambda i: i.id)[:limit]]
    if not items:  # say what was searched, so an empty answer can be told from a wrong question
        searched = f"bbox {tuple(round(v, 5) for v in window.bbox)} (lon/lat)"
        searched += f", time {window.datetime_query()}" if time is not None else ""
        searched += f", filter {filter}" if filter else ""
        typer.echo(f"no Items match {searched}; the local catalog holds {len(catalog)} Items of "
                   f"{the_cube.spec.source.collection} (stacube catalog sync fetches more)", err=True)
    if as_json:
        emit({"matched": len(items), "items": rows}, True)
    else:
        emit(rows, False, f"{len(items)} Items (showing {len(rows)})")


@catalog_app.command("info")
@handled
def catalog_info(cube: CubeArg, catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """What the cube's local catalog holds: where, how many Items, which windows were synced.

    Example: stacube catalog info cubes/s2 --json
    """
    the_cube = _open(cube, catalog_dir)
    catalog = the_cube.catalog
    windows = [w.to_json() for w in catalog.windows()]
    emit({"folder": str(catalog.folder), "source": catalog.source_url, "collection": catalog.collection,
          "items": len(catalog), "windows": windows}, as_json, "catalog")


# --- cube ---------------------------------------------------------------------------------------
def _info(the_cube: Any, with_spec: bool = True) -> dict[str, Any]:
    """What a person wants to know of a cube; ``with_spec`` adds the whole spec (WKT and all)."""
    from .crs import crs_label

    spec = the_cube.spec
    return {"url": str(the_cube.url), "name": spec.name, "variables": list(spec.variables),
            "conventions": {name: "as read (made before conventions were declared)" if v.convention is None else
                            f"physical = stored * {v.scale_factor:g} + {v.add_offset:g}" + (f" [{v.units}]" if v.units
                                                                                               else "")
                            for name, v in spec.variables.items()},
            "radiometry": spec.source.radiometry,
            "zones": {n: f"{crs_label(g.crs)} {g.shape.y}x{g.shape.x} px" for n, g in spec.zones.items()},
            "chunks": list(spec.chunks),
            "time": None if spec.time is None else f"{spec.time[0]} .. {spec.time[-1]} ({len(spec.time)} steps)",
            "source": _source_summary(spec.source), "snapshots": len(the_cube.history()),
            **({"spec": spec.to_json()} if with_spec else {})}


def _source_summary(source: Any) -> str:
    from .redaction import redact_url

    return f"{source.kind} {source.collection} at {redact_url(source.api_url)}"


@cube_app.command("create")
@handled
def cube_create(cube: CubeArg, spec: Annotated[Path, typer.Option(help="The cube's spec as JSON (what "
                                                                   "`stacube spec` or CubeSpec.save writes).")],
                catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """Create an empty cube from a spec file; the spec is stored inside the cube.

    Example: stacube spec arcticdem --resolution 10 > dem.json && stacube cube create cubes/dem --spec dem.json
    """
    from . import Cube, CubeSpec
    from .errors import SpecError

    try:
        loaded = CubeSpec.load(spec)
    except SpecError as error:
        raise SpecError(f"--spec {str(error).removeprefix('spec file ')}") from None
    the_cube = Cube.create(cube, loaded, catalog_dir=catalog_dir)
    emit(_info(the_cube, with_spec=as_json), as_json, "cube created")


@cube_app.command("info")
@handled
def cube_info(cube: CubeArg, catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """A cube's spec, zones, time axis and number of snapshots.

    Example: stacube cube info cubes/dem
    """
    emit(_info(_open(cube, catalog_dir), with_spec=as_json), as_json, "cube")


@cube_app.command("download")
@handled
def cube_download(cube: CubeArg, bbox: Bbox = None, crs: Crs = "EPSG:4326", time: Time = None,
                  concurrency: Annotated[int, typer.Option(help="Patches read at once.", min=1)] = 8,
                  runner: Annotated[str, typer.Option(help="local (threads) or prefect (a flow run).")] = "local",
                  skip_failed: Annotated[bool, typer.Option(help="Commit what could be read; list the rest.")]
                  = False,
                  catalog_dir: CatalogDir = None, as_json: AsJson = False, quiet: Quiet = False) -> None:
    """Fill the patches under an area and period that the cube lacks, as one snapshot.

    Example: stacube cube download cubes/dem --bbox -45.1,70.2,-44.8,70.4 --concurrency 16
    """
    the_cube = _open(cube, catalog_dir)
    report = the_cube.download(parse_roi(bbox, crs, None), parse_time(time), concurrency=concurrency,
                               runner=runner, progress=False if quiet else None, skip_failed=skip_failed)
    emit(_megabytes(_report(report), as_json), as_json, "download")


@cube_app.command("load")
@handled
def cube_load(cube: CubeArg, bbox: Bbox = None, crs: Crs = "EPSG:4326", resolution: Resolution = None,
              time: Time = None,
              variables: Annotated[str | None, typer.Option(help="Comma-separated variables (default: all).")]
              = None,
              offline: Annotated[bool, typer.Option(help="Never touch the network: missing patches are nodata.")]
              = False,
              at: Annotated[str | None, typer.Option(help="Read this snapshot id or tag instead of the latest.")]
              = None,
              out: Annotated[Path | None, typer.Option(help="Write the Tile: .tif (a COG per variable), .nc or "
                                                       ".zarr.")] = None,
              format: Annotated[str | None, typer.Option(help="cog, netcdf or zarr (default: from --out).")]
              = None,
              png: Annotated[Path | None, typer.Option(help="Also draw a quick-look PNG here.")] = None,
              rgb: Annotated[str | None, typer.Option(help="Three variables R,G,B for the PNG (default: the "
                                                      "first variable with a colour bar).")] = None,
              concurrency: Annotated[int, typer.Option(help="Patches read at once.", min=1)] = 8,
              chunks: Annotated[int | None, typer.Option(help="Read lazily in chunks of this many pixels a side "
                                                         "and write chunk by chunk: for ROIs bigger than "
                                                         "memory.", min=1)] = None,
              catalog_dir: CatalogDir = None, as_json: AsJson = False, quiet: Quiet = False) -> None:
    """Read an area and period from the cube (downloading what it lacks first) and write it.

    Example: stacube cube load cubes/dem --bbox -45.1,70.2,-44.8,70.4 --out dem.tif --png dem.png
    """
    if out:
        output_format(out, format)  # a wrong --out is refused before anything is downloaded
    for path in (out, png):
        if path:
            check_writable(path)  # as is a place it cannot be written to
    the_cube = _open(cube, catalog_dir)
    tile = the_cube.load(parse_roi(bbox, crs, resolution), parse_time(time),
                         variables=variables.split(",") if variables is not None else None, offline=offline, at=at,
                         concurrency=concurrency, progress=False if quiet else None,
                         chunks={"y": chunks, "x": chunks, "time": 1} if chunks is not None else None)
    with storage_errors(out or ".", "output"):  # named as the output, not as the cube
        written = [str(p) for p in write_tile(tile, out, format)] if out else []
    if png is not None:
        from .pictures import quicklook, save_figure

        bands = rgb.split(",") if rgb else None
        with storage_errors(png, "picture"):
            written.append(str(save_figure(quicklook(tile, bands, title=f"{the_cube.spec.name}"), png)))
    from .crs import crs_label

    emit({"variables": list(tile.data_vars), "shape": dict(tile.sizes), "crs": crs_label(tile.odc.crs),
          "snapshot": tile.attrs.get("stacube_snapshot"), "missing_patches": tile.attrs.get("missing_patches", []),
          "written": written}, as_json, "tile")


@cube_app.command("load-many")
@handled
def cube_load_many(cube: CubeArg,
                   rois: Annotated[Path, typer.Argument(help="The ROIs: GeoJSON, GeoPackage or GeoParquet, one "
                                                        "geometry per row, with a CRS.", show_default=False)],
                   out: Annotated[Path, typer.Option(help="A folder of COGs (<name>.tif per ROI; <name>_<variable>"
                                                     ".tif for several variables) or a .zarr store (a group per "
                                                     "ROI).", show_default=False)],
                   id_column: Annotated[str | None, typer.Option(help="The column that names each ROI's output "
                                                                 "(default: the row index).")] = None,
                   resolution: Annotated[float | None, typer.Option(help="Read each ROI's bounds onto a grid of "
                                                                    "this pixel size in the file's CRS (default: "
                                                                    "the cube zone's own grid).")] = None,
                   time: Time = None,
                   variables: Annotated[str | None, typer.Option(help="Comma-separated variables (default: all).")]
                   = None,
                   offline: Annotated[bool, typer.Option(help="Never touch the network: missing patches are "
                                                         "nodata.")] = False,
                   concurrency: Annotated[int, typer.Option(help="Patches read at once.", min=1)] = 8,
                   catalog_dir: CatalogDir = None, as_json: AsJson = False, quiet: Quiet = False) -> None:
    """Cut many ROIs out of the cube: the patches they lack are downloaded in ONE run (one snapshot),
    each patch once however many ROIs meet it, and each ROI's Tile is written as soon as it is in.

    Example: stacube cube load-many cubes/dem training-rois.parquet --id-column chip_id --out chips/
    """
    from .many import export_many

    check_writable(out / "x")  # before anything is downloaded: the folder (or .zarr) itself must be makeable
    the_cube = _open(cube, catalog_dir)
    chosen = variables.split(",") if variables is not None else None
    summary = export_many(the_cube, rois, out, parse_time(time), variables=chosen, id_column=id_column,
                          resolution=resolution, concurrency=concurrency, progress=False if quiet else None,
                          offline=offline)
    emit(_megabytes(summary, as_json), as_json, "load-many")


@cube_app.command("state")
@handled
def cube_state(cube: CubeArg, at: Annotated[str | None, typer.Option(help="A snapshot id or tag.")] = None,
               png: Annotated[Path | None, typer.Option(help="Draw the state as a PNG here.")] = None,
               html: Annotated[Path | None, typer.Option(help="Write an interactive map (HTML) here.")] = None,
               color_by: Annotated[str, typer.Option(help="snapshot or time (for the PNG).")] = "snapshot",
               catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """The filled patches: id, whether they hold data, and snapshot (--json adds zone, time and run id).

    --png draws them on lon/lat axes zoomed to the filled patches and the last ROIs; --html is a map.

    Example: stacube cube state cubes/dem --png state.png --html state.html
    """
    if png is not None:
        from .pictures import check_color_by

        check_color_by(color_by)  # before the state is read
    for path in (png, html):
        if path is not None:
            check_writable(path, "picture")
    the_cube = _open(cube, catalog_dir)
    state = the_cube.state(at)
    written = []
    if png is not None:
        from .pictures import save_figure

        with storage_errors(png, "picture"):
            written.append(save_figure(the_cube.plot_state(color_by=color_by, at=at), png))
    if html is not None:
        from .pictures import save_map

        with storage_errors(html, "map"):
            written.append(save_map(the_cube.explore(at=at), html))
    if as_json:
        emit(_frame_rows(state), True)
    else:  # zone and time are part of each id, and a snapshot is one run's: the rest are in --json
        emit([{"id": row["id"], "has_data": row["has_data"], "snapshot": row["snapshot"]}
              for row in _frame_rows(state)], False, f"{len(state)} filled patches",
             "zone and time are in each id; --json adds them and run_id")
    for path in written:  # on stderr with --json, which leaves stdout to the JSON
        typer.echo(f"wrote {path}", err=as_json)


@cube_app.command("history")
@handled
def cube_history(cube: CubeArg, catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """Snapshots, newest first: id, time, message, run id and patches written.

    Example: stacube cube history cubes/dem --json
    """
    emit(_frame_rows(_open(cube, catalog_dir).history()), as_json, "history")


@cube_app.command("tag")
@handled
def cube_tag(cube: CubeArg, name: Annotated[str, typer.Argument(help="The tag's name.")],
             snapshot: Annotated[str | None, typer.Option(help="The snapshot (default: the latest).")] = None,
             catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """Name a snapshot, to load it, roll back to it and keep it through expiry.

    Example: stacube cube tag cubes/dem before-reprocessing
    """
    snapshot_id = _open(cube, catalog_dir).tag(name, snapshot)
    emit({"tag": name, "snapshot": snapshot_id}, as_json, "tag")


@cube_app.command("rollback")
@handled
def cube_rollback(cube: CubeArg, to: Annotated[str, typer.Argument(help="A snapshot id or tag.")],
                  if_tip: Annotated[str | None, typer.Option(help="Only if the cube is still at this snapshot.")]
                  = None,
                  catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """Make an earlier snapshot the cube's current state (its record of filled patches too).

    Example: stacube cube rollback cubes/dem before-reprocessing
    """
    snapshot_id = _open(cube, catalog_dir).rollback(to, if_tip=if_tip)
    emit({"rolled_back_to": snapshot_id}, as_json, "rollback")


@cube_app.command("expire")
@handled
def cube_expire(cube: CubeArg,
                older_than: Annotated[str, typer.Option(help="Age of the snapshots to drop, e.g. 90D.")],
                keep_tags: Annotated[bool, typer.Option(help="Keep tagged snapshots.")] = True,
                grace: Annotated[str, typer.Option(help="Keep objects younger than this, and snapshots that were "
                                                   "the tip within it: runs in progress need them.")] = "24h",
                catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """Drop snapshots older than an age and free the bytes only they used.

    Example: stacube cube expire cubes/dem --older-than 90D
    """
    report = _open(cube, catalog_dir).expire(older_than, keep_tags=keep_tags, grace=grace)
    freed = {"bytes_freed": report.bytes_freed} if as_json else {"MB freed": f"{report.bytes_freed / 1e6:.1f}"}
    note = in_cli_words(report.note) if report.note else report.note
    emit({"snapshots_expired": report.snapshots_expired, **freed, "chunks_deleted": report.chunks_deleted,
          "kept_as_recent_tips": report.kept_as_recent_tips, "note": note}, as_json, "expire")


# --- parcels ------------------------------------------------------------------------------------
Store = Annotated[str, typer.Option(help="The parcel store: duckdb:///path/fields.duckdb or "
                                    "postgresql+asyncpg://user@host/db.")]


@parcels_app.command("import")
@handled
def parcels_import(path: Annotated[Path, typer.Argument(help="GeoParquet, GeoPackage or Shapefile.")],
                   id_column: Annotated[str, typer.Option(help="The column with each parcel's stable id.")],
                   store: Store,
                   layer: Annotated[str | None, typer.Option(help="The layer of a GeoPackage.")] = None,
                   watched: Annotated[bool, typer.Option(help="Watch the imported parcels.")] = True,
                   as_json: AsJson = False) -> None:
    """Import parcels: invalid geometries are repaired or rejected (with the reason), never failing the file.

    Example: stacube parcels import fields.gpkg --id-column parcel_id --store duckdb:///fields.duckdb
    """
    from .fields import open_parcel_store, read_parcels

    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r}: no such parcel file")
    imported = read_parcels(path, id_column, layer=layer)
    with open_parcel_store(store) as parcels:
        written = parcels.add_parcels(imported.parcels, watched=watched)
        groups = len(parcels.groups())
    emit({"imported": written, "rejected": imported.rejected.to_dict("records"), "groups": groups}, as_json,
         "parcels import")


@parcels_app.command("run")
@handled
def parcels_run(cube: CubeArg, store: Store, time: Time = None,
                offline: Annotated[bool, typer.Option(help="Use only what the cube holds.")] = False,
                inward_buffer: Annotated[float, typer.Option(
                    help="Metres each parcel is shrunk by first, leaving mixed edge pixels out.")] = 0.0,
                catalog_dir: CatalogDir = None, as_json: AsJson = False) -> None:
    """NDVI/NDMI of every watched parcel for each acquisition in the period, group by group, stored.

    Without Prefect; the `stacube-fields-*` flows do the same on a schedule.

    Example: stacube parcels run cubes/s2 --store duckdb:///fields.duckdb --time 2024-05-01/2024-05-31
    """
    from .fields import IndexSettings, compute_group, open_parcel_store

    if time is None:
        raise ValueError("no period: give --time, e.g. 2024-05-01/2024-05-31")
    settings = IndexSettings(inward_buffer_m=inward_buffer)
    the_cube = _open(cube, catalog_dir)
    rows, failed = [], {}
    with open_parcel_store(store) as parcels:
        for group_id in parcels.groups().group_id:
            try:
                result = compute_group(the_cube, parcels, group_id, parse_time(time), settings, offline=offline)
            except Exception as error:  # noqa: BLE001 - one group's failure is reported, the others go on
                failed[group_id] = str(error)
                continue
            rows.append({"group": group_id, "parcel_dates": len(result),
                         "usable": int(result["usable"].sum()) if len(result) else 0})
    if as_json:
        emit({"groups": rows, "failed": failed}, True)
    else:
        emit(rows, False, "parcel groups")
        for group_id, why in failed.items():
            typer.echo(f"error: group {group_id}: {why}", err=True)
    if failed:
        raise typer.Exit(1)


app.add_typer(build_spec_app(handled), name="spec")

if __name__ == "__main__":  # python -m stacube.cli
    sys.exit(app())
