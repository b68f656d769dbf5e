"""Printing a bench's figures: one rich table of string rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table


def print_table(console: Console, title: str, columns: Sequence[str],
                rows: Iterable[Sequence[str]]) -> None:
    """Print ``rows`` under ``columns`` as one table titled ``title``."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
