"""The action tutorials (4, 5, 7) run as their pages show and their quoted numbers hold (see ``test_tutorials.py``)."""

import pytest

from tests.docs.conftest import load_docs_module, run_tutorial_and_check_its_numbers

tutorials = load_docs_module("tutorials")
ACTION_PAGES = tutorials.pages(["04", "05", "07"])


@pytest.mark.docs
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", ACTION_PAGES, ids=[p.stem for p in ACTION_PAGES])
def test_action_tutorial_runs_and_its_numbers_hold(page, work):
    run_tutorial_and_check_its_numbers(tutorials, page, work)
