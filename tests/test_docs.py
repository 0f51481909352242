"""The docs describe what exists: the CLI reference is generated, the README starts right."""

from __future__ import annotations

import re

from mailer.cli.reference import render
from tests.conftest import REPO


def test_cli_reference_is_current() -> None:
    committed = (REPO / "docs" / "cli.md").read_text("utf-8")
    assert committed == render(), "regenerate with: make docs"


def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [
        line.split("#")[0].strip()
        for line in quick.split("```sh", 1)[1].split("```", 1)[0].splitlines()
    ]
    assert [c for c in commands if c] == ["make demo", "make test"]


def test_docs_link_to_files_that_exist() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    for target in (
        "docs/architecture.md",
        "docs/cli.md",
        "docs/templates.md",
        "docs/studio.md",
        "docs/service.md",
        "docs/deployment.md",
        "docs/performance.md",
        "docs/bounces.md",
        "config.example.toml",
    ):
        assert target in readme
        assert (REPO / target).is_file()


def test_studio_guide_images_exist() -> None:
    guide = (REPO / "docs" / "studio.md").read_text("utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", guide)
    assert images
    for image in images:
        assert (REPO / "docs" / image).is_file(), image
