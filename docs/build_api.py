"""Build the HTML API reference of adamem from its docstrings, with pdoc.

Usage (from the repository root, with ``pip install -e ".[docs]"``)::

    python docs/build_api.py [OUTPUT_DIR]      # default: docs/_build/api

Every public module of ``adamem`` gets a page; open ``OUTPUT_DIR/index.html``. Formulas are
typeset by MathJax, loaded from a CDN when a page is viewed.

The docstrings are Google style with reStructuredText markup, which pdoc converts to Markdown
except for constructs this script converts first: simple tables (``===  ===``) become Markdown
tables; ``.. math::`` blocks become raw HTML, which Markdown leaves alone (pdoc's own conversion
loses the ``\\\\`` line breaks of multi-line formulas to Markdown's backslash escapes, and adds no
alignment environment for their ``&``); ``:math:`` roles that wrap a line are joined onto one.
"""

from __future__ import annotations

import html
import pkgutil
import re
import sys
from pathlib import Path

import pdoc
import pdoc.docstrings

import adamem

DEFAULT_OUTPUT = Path(__file__).parent / "_build" / "api"

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_TABLE_BORDER = re.compile(r"^[ \t]*=+(?: +=+)+[ \t]*$")
_MATH_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)\.\. math::[ \t]*\n"
    r"(?P<body>(?:(?P=indent)[ \t]+\S[^\n]*(?:\n|$)|[ \t]*\n)+)",
    re.MULTILINE,
)


def public_modules() -> list[str]:
    """``adamem`` and its submodules whose names do not start with ``_``."""
    submodules = pkgutil.iter_modules(adamem.__path__, prefix="adamem.")
    return ["adamem", *sorted(m.name for m in submodules if not m.name.split(".")[-1][0] == "_")]


def math_blocks_to_html(docstring: str) -> str:
    """Replace each ``.. math::`` block by a MathJax display block in raw HTML."""

    def replace(match: re.Match[str]) -> str:
        formula = "\n".join(line.strip() for line in match["body"].strip().splitlines())
        if "&" in formula or "\\\\" in formula:
            formula = f"\\begin{{aligned}}\n{formula}\n\\end{{aligned}}"
        return f'\n<div class="math">\\[\n{html.escape(formula, quote=False)}\n\\]</div>\n\n'

    return _MATH_BLOCK.sub(replace, docstring)


def join_math_roles(docstring: str) -> str:
    """Put each inline ``:math:`...``` on one line, as pdoc only converts those."""
    return _MATH_ROLE.sub(lambda m: f":math:`{' '.join(m[1].split())}`", docstring)


def simple_tables_to_markdown(docstring: str) -> str:
    """Replace each reStructuredText simple table by a Markdown table."""
    lines = docstring.split("\n")
    converted: list[str] = []
    start = 0
    while start < len(lines):
        if not _TABLE_BORDER.match(lines[start]):
            converted.append(lines[start])
            start += 1
            continue
        end = start
        while end < len(lines) and lines[end].strip():
            end += 1
        converted.extend(_markdown_table(lines[start:end]))
        start = end
    return "\n".join(converted)


def _markdown_table(block: list[str]) -> list[str]:
    """A simple table: border, [header rows, border,] body rows, border (no blank lines)."""
    columns = [m.start() for m in re.finditer(r"=+", block[0])]
    borders = [i for i, line in enumerate(block) if _TABLE_BORDER.match(line)]
    header_end = borders[1] if len(borders) > 2 else 0
    rows: list[list[str]] = []
    for index, line in enumerate(block):
        if index in borders:
            continue
        bounds = zip(columns, [*columns[1:], len(line)])
        cells = [line[left:right].strip() for left, right in bounds]
        if rows and not cells[0] and index > header_end + 1:  # continuation of the row above
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    header_rows = sum(1 for i in range(1, header_end) if i not in borders)
    header = rows[0] if header_rows else [""] * len(columns)
    body = rows[1:] if header_rows else rows

    def markdown_row(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [markdown_row(header), "|" + "---|" * len(columns), *map(markdown_row, body), ""]


def build(output_dir: Path = DEFAULT_OUTPUT) -> list[str]:
    """Write the reference into ``output_dir``; returns the modules documented."""
    convert = pdoc.docstrings.convert

    def convert_with_math(docstring: str, docformat: str, source_file: Path | None) -> str:
        markdown_ready = join_math_roles(simple_tables_to_markdown(math_blocks_to_html(docstring)))
        return convert(markdown_ready, docformat, source_file)

    modules = public_modules()
    pdoc.render.configure(docformat="google", math=True, footer_text=f"adamem {adamem.__version__}")
    pdoc.docstrings.convert = convert_with_math
    try:
        pdoc.pdoc(*modules, output_directory=output_dir)
    finally:
        pdoc.docstrings.convert = convert
    return modules


if __name__ == "__main__":
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    documented = build(output)
    print(f"API reference of {', '.join(documented)} written to {output}/index.html")
