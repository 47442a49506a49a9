"""Every tutorial's code runs as its page shows it, and every number it quotes is what the run gives.

The pages run in order in one work folder per test file, as a reader would run them. Four files,
because ``make test-docs`` (pytest-xdist) keeps a file on one worker and each page costs minutes: this one has tutorials
1, 2 and 6 (2 and 6 use 1's model), ``test_tutorials_mni.py`` tutorial 3 (it stands alone),
``test_tutorials_action.py`` tutorials 4, 5 and 7 (5 and 7 use 4's videos and model) and
``test_tutorials_sequences.py`` tutorial 8. (One file of all seven was the suite's long pole: 640 of 675 s.)
"""

import subprocess

import pytest

from tests.docs.conftest import ROOT, load_docs_module, run_tutorial_and_check_its_numbers
from tests.docs.test_tutorials_action import ACTION_PAGES
from tests.docs.test_tutorials_mni import MNI_PAGES
from tests.docs.test_tutorials_sequences import SEQUENCE_PAGES

tutorials = load_docs_module("tutorials")
PAGES = tutorials.pages()
VNET_PAGES = tutorials.pages(["01", "02", "06"])


def test_there_are_eight_tutorials_each_quoting_checked_numbers():
    assert [p.name[:2] for p in PAGES] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    for page in PAGES:
        assert tutorials.quotes(page.read_text(encoding="utf-8")), f"{page.name} quotes no checked number"


def test_every_tutorial_is_run_by_exactly_one_file():
    assert sorted(p.name for p in VNET_PAGES + MNI_PAGES + ACTION_PAGES + SEQUENCE_PAGES) == [p.name for p in PAGES]


@pytest.mark.docs
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("page", VNET_PAGES, ids=[p.stem for p in VNET_PAGES])
def test_tutorial_runs_and_its_numbers_hold(page, work):
    run_tutorial_and_check_its_numbers(tutorials, page, work)


def test_runner_runs_bash_and_python_blocks_in_order_and_skips_what_it_must(tmp_path):
    page = tmp_path / "99-example.md"
    page.write_text(
        "```bash\necho 1 > a.txt\n```\n"
        "=== \"tab\"\n\n    ```python\n    n = int(open('a.txt').read()) + 1\n    ```\n"
        "```matlab\nx = 1\n```\n"
        "```bash\n# not run: needs a second machine\nexit 3\n```\n"
        "```python\nimport json; json.dump({'n': n}, open('n.json', 'w'))\n```\n"
        "{{ 2 ± 0 from n.json#n }} and {{ 5 ± 1 from n.json#n }}\n",
        encoding="utf-8",
    )
    tutorials.run_page(page, tmp_path)
    assert tutorials.check_page(page, tmp_path) == ["99-example.md: quotes 5.0 ± 1.0 for n.json#n, the run gave 2.0000"]


def test_runner_reports_a_failing_block(tmp_path):
    page = tmp_path / "99-broken.md"
    page.write_text("```bash\nfalse\n```\n", encoding="utf-8")
    with pytest.raises(subprocess.CalledProcessError):
        tutorials.run_page(page, tmp_path)


def test_every_figure_file_is_committed():
    for page in PAGES:
        for image, _ in tutorials.figures(page.read_text(encoding="utf-8")):
            assert (ROOT / "docs" / "tutorials" / image).is_file(), f"{page.name}: {image} (run make tutorials)"
