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


def cell_text(
    cell: Stat | None,
    pm: str = "±",
    count: Callable[[int], str] | None = None,
    strong: Callable[[str], str] | None = None,
) -> str:
    """``71.20 ± 0.45 (n=3)``; ``-`` for an empty cell; ``*`` marks a partial average;
    ``strong`` (when given) wraps the ``mean ± spread`` part, to set the best value in bold."""
    if cell is None:
        return "-"
    text = f"{cell.mean:.2f}"
    if cell.spread is not None:
        text += f" {pm} {cell.spread:.2f}"
    if strong is not None:
        text = strong(text)
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


def best_cells(table: Table) -> set[tuple[int, int]]:
    """(row, column) of the best value of each column, within each group of rows that share
    their leading labels (base-to-new: one dataset); ties all count, as printed (two decimals).
    Partial averages, which cover fewer datasets, do not compete; a lone value is no best."""
    best = set()
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, (labels, _) in enumerate(table.rows):
        groups.setdefault(tuple(labels[:-1]), []).append(i)
    pick = min if table.lower_is_better else max
    for members in groups.values():
        for column in range(len(table.columns)):
            shown = {}
            for i in members:
                cell = table.rows[i][1][column]
                if cell is not None and not cell.partial:
                    shown[i] = round(cell.mean, 2)
            if len(shown) > 1:
                top = pick(shown.values())
                best.update((i, column) for i, value in shown.items() if value == top)
    return best


def latex_label(table: Table) -> str:
    return "tab:" + table.name.replace("_", "-")


def latex(table: Table, bold_best: bool = False) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), its
    caption in plain words (the notes end it) and a ``\\label`` (``tab:by-dataset``, ...);
    ``bold_best`` sets each column's best value in bold."""
    bold = best_cells(table) if bold_best else set()

    def text(cell: Stat | None, strong: bool) -> str:
        return cell_text(
            cell,
            pm="$\\pm$",
            count=lambda n: f"{{\\scriptsize ({n})}}",
            strong=(lambda t: f"\\textbf{{{t}}}") if strong else None,
        )

    lead = len(table.label_headers)
    headers = [latex_escape(h) for h in (*table.label_headers, *table.columns)]
    notes = [*table.notes] + (["Bold: the best value of each column."] if bold else [])
    caption = " ".join([table.caption or table.title + ".", *notes])
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{latex_label(table)}}}",
        f"\\begin{{tabular}}{{{'l' * lead}{'r' * len(table.columns)}}}",
        "\\toprule",
        " & ".join(headers) + " \\\\",
        "\\midrule",
    ]
    previous = None
    for i, (labels, cells) in enumerate(table.rows):
        group = tuple(labels[:-1])
        if previous is not None and group != previous:
            lines.append("\\midrule")  # base-to-new: a rule between datasets
        previous = group
        row = [latex_escape(label) for label in labels]
        row += [text(c, (i, j) in bold) for j, c in enumerate(cells)]
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


def render(tables: list[Table], fmt: str, spread_name: str = "std", bold_best: bool = False) -> str:
    """All ``tables`` in one format, separated by blank lines (``bold_best``: LaTeX only)."""
    if fmt == "csv":
        return csv_text(tables, spread_name)
    if fmt == "latex":
        return "\n\n".join(latex(t, bold_best) for t in tables) + "\n"
    one = {"terminal": terminal, "markdown": markdown}[fmt]
    return "\n\n".join(one(t) for t in tables) + "\n"
