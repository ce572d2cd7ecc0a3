"""How the command line prints for people: tables whose ids, paths and numbers are never cut.

A table is drawn only when each column can hold its longest word (an id, a path, a number) whole;
longer text wraps between words. When the terminal is too narrow for that, each row is printed as a
record of ``field  value`` lines instead, as ``git log`` and psql's expanded mode do: a value may run
past the terminal's edge there, but no id is ever shortened, cut or broken across lines, so every id
on the screen can be copied into the next command. Output to a pipe or a file is one table at its
natural width, a row per line, whatever its width (as ``kubectl get``), for grep and awk.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

BORDER = 3  # a column's share of a boxed table's frame: its left rule and one space of padding each side


def cell_text(value: Any) -> str:
    """A value as a person reads it in a table: times to the second, lists of names one per line,
    small mappings as ``key: value`` lines, nothing at all for a missing value."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, np.generic):
        return cell_text(value.item())
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    if isinstance(value, Mapping) and value:
        return "\n".join(f"{k}: {v if isinstance(v, str | int | float) else _json(v)}" for k, v in value.items())
    if isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        return "\n".join(_json(v) for v in value)
    if isinstance(value, bool | int | float):
        return str(value)
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(plain(value))


def plain(value: Any) -> Any:
    """JSON-ready: timestamps as ISO text, numpy scalars as numbers, geometries as WKT."""
    import numpy as np
    import pandas as pd

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return None if isinstance(value, float) and value != value else value
    if hasattr(value, "wkt"):
        return value.wkt
    if value is pd.NaT:
        return None
    return str(value)


def _longest_word(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(word) for word in text.split()), default=0)


def _longest_line(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.splitlines()), default=0)


def column_widths(columns: Sequence[Sequence[str]], room: int | None) -> list[int] | None:
    """Content widths for columns (each a list of its header and cells) in ``room`` characters of
    content, every column at least as wide as its longest word; None if that does not fit.
    ``room=None``: no limit, each column as wide as its longest line."""
    natural = [max(1, *(_longest_line(t) for t in texts)) for texts in columns]
    if room is None or sum(natural) <= room:
        return natural
    least = [max(1, *(_longest_word(t) for t in texts)) for texts in columns]
    if sum(least) > room:
        return None
    widths, spare = list(least), room - sum(least)
    while spare > 0:  # give the spare room to the columns that would wrap most, a character at a time
        wanting = [i for i, (w, n) in enumerate(zip(widths, natural, strict=True)) if w < n]
        if not wanting:
            break
        neediest = max(wanting, key=lambda i: natural[i] - widths[i])
        widths[neediest] += 1
        spare -= 1
    return widths


def records(rows: Sequence[Mapping[str, str]], width: int) -> str:
    """Rows as ``field  value`` records, a blank line between them; values wrap between words only, and
    a field without a value is left out (as ``git log`` does)."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    key_width = max(len(name) for name in names)
    room = max(width - key_width - 2, 20)
    blocks = []
    for row in rows:
        lines = []
        for name, text in row.items():
            if not text:
                continue
            wrapped = [piece for line in text.splitlines() or [""] for piece in
                       textwrap.wrap(line, room, break_long_words=False, break_on_hyphens=False) or [""]]
            lines.append(f"{name:<{key_width}}  {wrapped[0]}")
            lines.extend(f"{'':<{key_width}}  {piece}" for piece in wrapped[1:])
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def print_table(data: Mapping[str, Any] | Sequence[Mapping[str, Any]], title: str | None = None,
                caption: str | None = None, *, width: int | None = None) -> None:
    """``data`` (a mapping, or a list of row mappings) as a table on stdout, or as records when the
    terminal is too narrow for its ids (see the module's note). ``width`` overrides the terminal's."""
    import typer
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    piped = not console.is_terminal and "COLUMNS" not in os.environ and width is None
    width = None if piped else width or console.width
    keyed = isinstance(data, Mapping)
    if keyed:
        rows = [{str(k): cell_text(v) for k, v in data.items()}]
        columns = [list(rows[0]), list(rows[0].values())]
    else:
        rows = [{str(k): cell_text(v) for k, v in row.items()} for row in data]
        names = list(rows[0]) if rows else ["(none)"]
        columns = [[name, *(row.get(name, "") for row in rows)] for name in names]
    room = None if width is None else width - BORDER * len(columns) - 1
    widths = column_widths(columns, room)
    if widths is None:  # too narrow for whole ids: records, never a cut id
        heading = [line for line in (title, caption) if line]
        typer.echo("\n".join([*heading, records(rows, width or 0)]))
        return
    table = Table(title=title, caption=caption, show_header=not keyed, box=box.SQUARE if keyed else box.HEAVY_HEAD)
    for index, (texts, column_width) in enumerate(zip(columns, widths, strict=True)):
        table.add_column(None if keyed else texts[0], width=column_width, overflow="fold",
                         style="bold" if keyed and index == 0 else None)
    for texts in zip(*(texts if keyed else texts[1:] for texts in columns), strict=True):
        table.add_row(*(Text(t) for t in texts))
    total = sum(widths) + BORDER * len(columns) + 1
    Console(width=max(total, width or total), soft_wrap=False).print(table, crop=False)
