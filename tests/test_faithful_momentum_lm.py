"""Momentum ResNet and LM-ResNet: published pairings and the authors' layout."""

import csv
import pathlib

import pytest

from debench.registry import list_models, model_info

pytestmark = pytest.mark.usefixtures("one_thread")
TABLE = pathlib.Path(__file__).resolve().parents[1] / "config" / "reference" / "published_results.csv"


def test_momentum_resnet18_is_not_paired_with_rows_of_unstated_depth():
    assert model_info("momentum_resnet18").reference == ()


@pytest.mark.parametrize("name", list_models("momentum_resnet*"))
def test_momentum_references_name_a_depth_equal_to_the_model(name):
    """A selector must pin the depth, and every row it matches must carry that depth."""
    depth = name.removeprefix("momentum_resnet")
    rows = list(csv.DictReader(TABLE.open()))
    for sel in model_info(name).reference:
        assert sel.get("depth") == depth, sel
        matched = [r for r in rows if all(r.get(k) == v for k, v in sel.items())]
        assert matched and all(r["depth"] == depth for r in matched)
