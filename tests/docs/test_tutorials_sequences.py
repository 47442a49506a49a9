"""Tutorial 8 (sequence classification, Japanese Vowels) runs as its page shows and its quoted numbers hold (see ``test_tutorials.py``)."""

import pytest

from tests.docs.conftest import load_docs_module, run_tutorial_and_check_its_numbers

tutorials = load_docs_module("tutorials")
SEQUENCE_PAGES = tutorials.pages(["08"])


@pytest.mark.docs
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", SEQUENCE_PAGES, ids=[p.stem for p in SEQUENCE_PAGES])
def test_sequence_tutorial_runs_and_its_numbers_hold(page, work):
    run_tutorial_and_check_its_numbers(tutorials, page, work)
