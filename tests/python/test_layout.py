"""The test folders' own layout: one conftest.py for all of tests/python.

The tests import helpers with ``from conftest import ...``; pytest (and workers that import a
test module by reference) find the first module named ``conftest`` on sys.path, so a second
conftest.py in a sub-folder shadows this folder's and breaks unrelated tests."""

from pathlib import Path


def test_only_one_conftest_under_tests_python():
    here = Path(__file__).resolve().parent
    extra = [str(p.relative_to(here)) for p in here.rglob("conftest.py") if p.parent != here]
    assert extra == [], f"put these fixtures into tests/python/conftest.py instead: {extra}"
