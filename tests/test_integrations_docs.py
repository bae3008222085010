"""docs/build_api.py: the API reference builds from the docstrings, with the math intact."""

import importlib.util
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("pdoc")

BUILD_SCRIPT = Path(__file__).parents[1] / "docs" / "build_api.py"


@pytest.fixture(scope="module")
def build_api():
    spec = importlib.util.spec_from_file_location("build_api", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_module_gets_a_page_without_leftover_markup(build_api, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules = build_api.build(tmp_path)
    assert [str(w.message) for w in caught if "pdoc" in w.filename] == []
    assert {"adamem", "adamem.amsgd", "adamem.amadamw", "adamem.monitoring"} <= set(modules)
    for module in modules:
        page = tmp_path / (module.replace(".", "/") + ".html")
        docstrings = re.findall(r'<div class="docstring">(.*?)</div>\s*\n', page.read_text(), re.S)
        for docstring in docstrings:
            assert not re.search(r"\.\. \w+::|:math:|====|``", docstring), (module, docstring)
    amsgd = (tmp_path / "adamem" / "amsgd.html").read_text()
    assert "\\begin{aligned}" in amsgd and "\\\\\n" in amsgd


def test_math_block_becomes_aligned_display_math(build_api):
    docstring = "Update:\n\n.. math::\n\n    a &= b \\\\\n    c &< d"
    assert build_api.math_blocks_to_html(docstring) == (
        'Update:\n\n\n<div class="math">\\[\n\\begin{aligned}\na &amp;= b \\\\\n'
        "c &amp;&lt; d\n\\end{aligned}\n\\]</div>\n\n"
    )
    assert "aligned" not in build_api.math_blocks_to_html(".. math::\n\n    x = 1\n")


def test_simple_tables_become_markdown(build_api):
    with_header = "\n".join(
        [
            "=====  =====",
            "key    value",
            "=====  =====",
            "a      1",
            "       more",
            "b|c    2",
            "=====  =====",
        ]
    )
    assert build_api.simple_tables_to_markdown(with_header).splitlines() == [
        "| key | value |",
        "|---|---|",
        "| a | 1 more |",
        "| b\\|c | 2 |",
    ]
    without_header = "===  ===\na    1\n===  ===\n"
    assert build_api.simple_tables_to_markdown(without_header).splitlines()[:3] == [
        "|  |  |",
        "|---|---|",
        "| a | 1 |",
    ]


def test_wrapped_math_role_is_joined(build_api):
    assert build_api.join_math_roles("see :math:`a +\n    b` here") == "see :math:`a + b` here"
