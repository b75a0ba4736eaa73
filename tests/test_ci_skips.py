"""In CI (``CI=true``) a test whose prerequisite is missing fails, naming it; elsewhere it skips."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INNER = '''
import pytest

mod = pytest.importorskip("no_such_module_debench")

def test_x():
    pass
'''

INNER_TESTS = '''
import pytest
from tests.conftest import skip_missing

def test_data():
    skip_missing("the offline data shards")

def test_import():
    pytest.importorskip("no_such_module_debench")

def test_deliberate():
    pytest.skip("large; covered elsewhere")

@pytest.mark.cuda
def test_gpu():
    pass
'''

CONFTEST = '''
from tests.conftest import (pytest_collection_modifyitems, pytest_make_collect_report,  # noqa: F401
                            pytest_runtest_makereport)
'''


def run_inner(pytester, monkeypatch, ci: str | None, *args, module_level: bool = False):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(**({"test_module_level": INNER} if module_level else {"test_inner": INNER_TESTS}))
    pytester.makeini("[pytest]\nmarkers =\n    cuda: gpu\n")
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA", *args)


def test_missing_prerequisites_fail_in_ci_and_name_what_is_missing(pytester, monkeypatch):
    result = run_inner(pytester, monkeypatch, "true")
    result.assert_outcomes(failed=2, skipped=1, deselected=1)
    out = result.stdout.str()
    assert "needs what is missing: the offline data shards" in out
    assert "needs what is missing: Skipped: could not import 'no_such_module_debench'" in out


def test_module_level_importorskip_is_a_collection_error_in_ci(pytester, monkeypatch):
    result = run_inner(pytester, monkeypatch, "true", module_level=True)
    result.assert_outcomes(errors=1)
    assert "needs what is missing: Skipped: could not import 'no_such_module_debench'" in result.stdout.str()
    run_inner(pytester, monkeypatch, None, module_level=True).assert_outcomes(skipped=1)


def test_missing_prerequisites_skip_outside_ci(pytester, monkeypatch):
    result = run_inner(pytester, monkeypatch, None)
    result.assert_outcomes(skipped=3, deselected=1)
    assert "missing prerequisite: the offline data shards" in result.stdout.str()


def test_cuda_tests_run_only_when_selected(pytester, monkeypatch):
    result = run_inner(pytester, monkeypatch, None, "-m", "cuda")
    result.assert_outcomes(passed=1, deselected=3)
