"""Tables as text: for the terminal, Markdown, LaTeX (booktabs) and CSV.

Text formats show a cell as ``mean ± spread (n=seeds)``; a single seed has no spread, so it shows
``mean (n=1)``. CSV is tidy (one line per cell, numbers in their own columns) so that a
spreadsheet or pandas reads it without parsing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from tabulate import tabulate

from .tables import Stat, Table

FORMATS = ("terminal", "markdown", "latex", "csv")
EXTENSIONS = {"terminal": "txt", "markdown": "md", "latex": "tex", "csv": "csv"}


def cell_text(cell: Stat | None, pm: str = "±", count: Callable[[int], str] | None = None) -> str:
    """``71.20 ± 0.45 (n=3)``; ``-`` for an empty cell; ``*`` marks a partial average."""
    if cell is None:
        return "-"
    text = f"{cell.mean:.2f}"
    if cell.spread is not None:
        text += f" {pm} {cell.spread:.2f}"
    if cell.seeds is not None:
        text += " " + (count(cell.seeds) if count else f"(n={cell.seeds})")
    return text + ("*" if cell.partial else "")


def _grid(table: Table, text: Callable[[Stat | None], str]) -> list[list[str]]:
    return [[*labels, *(text(c) for c in cells)] for labels, cells in table.rows]


def terminal(table: Table) -> str:
    headers = [*table.label_headers, *table.columns]
    align = ("left",) * len(table.label_headers) + ("right",) * len(table.columns)
    body = tabulate(_grid(table, cell_text), headers=headers, colalign=align, disable_numparse=True)
    return "\n".join([table.title, body, *table.notes])


def markdown(table: Table) -> str:
    def text(cell: Stat | None) -> str:
        return cell_text(cell).replace("*", "\\*")

    headers = [*table.label_headers, *table.columns]
    align = ("left",) * len(table.label_headers) + ("right",) * len(table.columns)
    body = tabulate(
        _grid(table, text), headers=headers, colalign=align, tablefmt="github",
        disable_numparse=True,
    )  # fmt: skip
    notes = [note.replace("*", "\\*", 1) if note.startswith("*") else note for note in table.notes]
    return "\n\n".join([f"**{table.title}**", body, *notes])


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$"}  # fmt: skip


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex(table: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); the
    notes end the caption."""

    def text(cell: Stat | None) -> str:
        return cell_text(cell, pm="$\\pm$", count=lambda n: f"{{\\scriptsize ({n})}}")

    lead = len(table.label_headers)
    headers = [latex_escape(h) for h in (*table.label_headers, *table.columns)]
    caption = " ".join([table.title + ".", *table.notes])
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\begin{{tabular}}{{{'l' * lead}{'r' * len(table.columns)}}}",
        "\\toprule",
        " & ".join(headers) + " \\\\",
        "\\midrule",
    ]
    for labels, cells in table.rows:
        row = [latex_escape(label) for label in labels] + [text(c) for c in cells]
        lines.append(" & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines)


def csv_text(tables: list[Table], spread_name: str = "std") -> str:
    """One line per cell: table, row, column, mean, spread, seeds, datasets (for averages) and
    whether the average is partial; empty fields where a number does not apply."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "row", "column", "mean", spread_name, "seeds", "datasets", "partial"])
    for table in tables:
        for labels, cells in table.rows:
            for column, cell in zip(table.columns, cells):
                if cell is None:
                    continue
                writer.writerow(
                    [
                        table.name,
                        " / ".join(labels),
                        column,
                        f"{cell.mean:.4f}",
                        "" if cell.spread is None else f"{cell.spread:.4f}",
                        "" if cell.seeds is None else cell.seeds,
                        "" if cell.datasets is None else cell.datasets,
                        int(cell.partial) if cell.datasets is not None else "",
                    ]
                )
    return out.getvalue()


def render(tables: list[Table], fmt: str, spread_name: str = "std") -> str:
    """All ``tables`` in one format, separated by blank lines."""
    if fmt == "csv":
        return csv_text(tables, spread_name)
    one = {"terminal": terminal, "markdown": markdown, "latex": latex}[fmt]
    return "\n\n".join(one(t) for t in tables) + "\n"
