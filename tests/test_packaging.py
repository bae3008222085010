"""The package's metadata: version, license, citation, changelog and extras agree."""

import json
from importlib import metadata
from pathlib import Path

import pytest

import adamem

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_version_is_the_same_everywhere(project):
    version = adamem.__version__
    assert project["version"] == version
    assert f"Version {version} (" in (ROOT / "README.md").read_text()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{version}] - " in changelog


def test_license_is_apache_2_and_ships_with_the_package(project):
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text


def test_installed_metadata_carries_the_license():
    """Checked where the installed adamem is this checkout (as in CI's editable install)."""
    try:
        distribution = metadata.distribution("adamem")
    except metadata.PackageNotFoundError:
        pytest.skip("adamem is not installed")
    origin = json.loads(distribution.read_text("direct_url.json") or "{}").get("url")
    if origin != ROOT.as_uri():
        pytest.skip(f"the installed adamem comes from {origin}, not {ROOT}")
    assert distribution.metadata["License-Expression"] == "Apache-2.0"
    assert distribution.metadata["License-File"] == "LICENSE"


def test_citation_names_the_software_and_the_paper():
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert {"cff-version", "message", "title", "authors"} <= citation.keys()
    assert (citation["type"], citation["version"]) == ("software", adamem.__version__)
    assert citation["license"] == "Apache-2.0"
    paper = citation["preferred-citation"]
    assert paper["title"] == (
        "Adaptive Memory Momentum via a Model-Based Framework for Deep Learning Optimization"
    )
    assert [author["family-names"] for author in paper["authors"]] == ["Topollai", "Choromanska"]
    assert paper["year"] == 2026 and "AISTATS" in paper["conference"]["name"]


def test_triton_is_an_extra_of_its_own(project):
    """CPU-only installs of the test extra do not download Triton (about 1 GB)."""
    extras = project["optional-dependencies"]
    assert not any(requirement.startswith("triton") for requirement in extras["test"])
    assert [requirement.split(">=")[0] for requirement in extras["triton"]] == ["triton"]
    assert ",triton]" in (ROOT / ".ci" / "run").read_text()
