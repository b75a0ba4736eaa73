"""Shake-Shake 26 2xkd against the author's Torch code and README (issue 27, points 5 and 6).

xgastaldi/shake-shake@e799d87: ``models/shakeshake.lua`` (CIFAR-10: 3x3 conv 3 -> 16 + BN, three
stages of (26 - 2) / 6 = 4 ShakeShakeBlocks at k, 2k, 4k channels, ReLU, 8x8 average pool,
Linear(4k, 10); convolutions lose their bias under cuDNN >= 4, ``ConvInit``) and
``models/shakeshakeblock.lua`` (two branches ReLU-conv3x3-BN-ReLU-conv3x3-BN; a shape-changing
skip is ReLU, two shifted strided 1x1 convs to cout / 2, concatenated, BN).
"""

import csv
import pathlib

import pytest

from debench.registry import create_model, model_info
from debench.train.measure import count_parameters

PUBLISHED = pathlib.Path(__file__).resolve().parents[1] / "config" / "reference" / "published_results.csv"


def lua_count(k: int) -> int:
    """Parameters of shakeshake.lua's CIFAR-10 net with baseWidth k (weights of bias-free convs, BN 2/channel)."""
    def block(cin, cout):
        branch = 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout
        skip = 2 * cin * (cout // 2) + 2 * cout if cin != cout else 0
        return 2 * branch + skip

    total, cin = 27 * 16 + 2 * 16, 16
    for cout in (k, 2 * k, 4 * k):
        total += block(cin, cout) + 3 * block(cout, cout)
        cin = cout
    return total + 4 * k * 10 + 10


def test_hand_count_of_26_2x32d():
    # stem 464; stage 1: 27,904 + 576 + 3 x 37,120 = 139,840; stage 2: 111,104 + 2,176 + 3 x 147,968
    # = 557,184; stage 3: 443,392 + 8,448 + 3 x 590,848 = 2,224,384; linear 1,290
    assert lua_count(32) == 464 + 139_840 + 557_184 + 2_224_384 + 1_290 == 2_923_162


@pytest.mark.parametrize("k", [32, 64, 96])
def test_parameter_count_is_the_lua_models(k):
    assert count_parameters(create_model(f"shake_shake26_2x{k}d")) == lua_count(k)


def test_reference_is_the_final_versions_table1():
    """README Table 1 at e799d87 (final arXiv version): Shake-Shake-Image 3.55 / 2.98 / 2.86."""
    rows = list(csv.DictReader(PUBLISHED.open(newline="")))
    want = {32: "3.55", 64: "2.98", 96: "2.86"}
    for k, value in want.items():
        (sel,) = model_info(f"shake_shake26_2x{k}d").reference
        hits = [r for r in rows if all(r[c] == v for c, v in sel.items())]
        assert [r["value"] for r in hits] == [value], (k, sel)
        assert "e799d87" in hits[0]["source_url"]
