"""The commands of the segmentation pages, run as written from the installed wheel (:mod:`tests.docs.commands`);
``make test-docs`` and CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.commands import PAGE_GROUPS, run_page


@pytest.mark.docs
@pytest.mark.parametrize("page", PAGE_GROUPS["test_commands_medseg.py"])
def test_the_commands_of_a_page_run_as_written_from_the_wheel(page: str, installed: Path, tmp_path: Path) -> None:
    run_page(page, installed, tmp_path)
