"""Every shell command of the README and the docs runs as written, from the installed wheel, in an empty folder
(:mod:`tests.docs.commands` says how); this file: the getting-started route (``make test-docs`` and CI), and the
checks of the harness (``make test``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.commands import (
    NOT_RUN,
    PAGE_GROUPS,
    PLACEHOLDERS,
    ROOT,
    RUN_ELSEWHERE,
    bash_blocks,
    commands,
    pages,
    pages_with_commands,
    run_page,
    shrink,
)


def test_every_page_with_commands_is_checked_and_each_block_runs_or_says_why_not() -> None:
    checked = [p for p in pages() if bash_blocks(p)]
    names = {str(p.relative_to(ROOT)) for p in checked}
    assert {"README.md", "docs/getting-started.md", "docs/medseg.md", "bundles/vnet_seg/docs/README.md"} <= names
    for page in checked:
        for block in bash_blocks(page):
            if block.startswith("# not run"):
                assert NOT_RUN.match(block), f"{page.name}: a skipped block must say why: {block.splitlines()[0]!r}"
            else:
                found = PLACEHOLDERS.findall(block)
                assert not found, f"{page.relative_to(ROOT)}: placeholders {found} cannot run as written:\n{block}"


def test_shrinking_keeps_the_command_and_only_makes_it_tiny() -> None:
    block = "medact-seg make-demo-data data  # twelve cases\nmedact-action train --data v --model c3d_gru --epochs 10 --out r && x\n"
    assert shrink(block) == (
        "medact-seg make-demo-data data --train 5 --test 1  # twelve cases\n"
        "medact-action train --data v --model c3d_gru --out r --epochs 1 --frames 8 --size 32 && x\n"
    )


@pytest.mark.parametrize("page", sorted(RUN_ELSEWHERE))
def test_a_page_not_run_has_each_of_its_commands_run_as_written_on_another_page(page: str) -> None:
    elsewhere = {command for other in RUN_ELSEWHERE[page] for command in commands(other)}
    assert commands(page), f"{page}: no command found"
    missing = [command for command in commands(page) if command not in elsewhere]
    assert not missing, f"{page}: not run as written on {RUN_ELSEWHERE[page]}: {missing}"


def test_every_page_with_commands_is_in_one_group() -> None:
    grouped = [page for pages in PAGE_GROUPS.values() for page in pages]
    assert sorted(grouped) == sorted(pages_with_commands()) and len(set(grouped)) == len(grouped)


@pytest.mark.docs
@pytest.mark.parametrize("page", PAGE_GROUPS["test_commands.py"])
def test_the_commands_of_a_page_run_as_written_from_the_wheel(page: str, installed: Path, tmp_path: Path) -> None:
    run_page(page, installed, tmp_path)
