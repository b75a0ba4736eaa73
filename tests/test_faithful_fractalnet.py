"""FractalNet follows the authors' generator (gustavla/fractalnet, generation/fractalnet.py)."""

import pytest
import torch

from debench.registry import create_model
from debench.train.measure import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fractalnet20_has_the_authors_layout_and_count():
    """C = 3, B = 5, FILTERS = [64, 128, 256, 512, 512] (generator defaults), conv with bias,
    Caffe BatchNorm without Scale (no learned parameters), linear 512 -> 10.

    Per block (cin -> c): 7 convs, 3 opening a column (cin -> c), 4 inside (c -> c), each
    9 * in * c + c:
      3->64:    3 * 1,792     + 4 * 36,928    =    153,088
      64->128:  3 * 73,856    + 4 * 147,584   =    811,904
      128->256: 3 * 295,168   + 4 * 590,080   =  3,245,824
      256->512: 3 * 1,180,160 + 4 * 2,359,808 = 12,979,712
      512->512: 7 * 2,359,808                 = 16,518,656
    head 512 * 10 + 10 = 5,130; total 33,714,314. (The old quarter-width C = 3 net had 2,113,594.)
    """
    model = create_model("fractalnet20")
    assert count_parameters(model) == 33_714_314
    assert [b.short[0].out_channels for b in model.blocks] == [64, 128, 256, 512, 512]
    assert [b.columns for b in model.blocks] == [3] * 5


def test_join_is_one_mean_over_all_columns_not_a_nested_mean():
    torch.manual_seed(0)
    blk = create_model("fractalnet20", width=8).blocks[0].eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        cols = blk(x, 0.0, None)
        assert isinstance(cols, list) and len(cols) == 3  # the block hands all three columns to its join
        a, b = blk.deep[0], blk.deep[1]
        m = (a.short(x) + a.deep[1].short(a.deep[0].short(x))) / 2  # inner join of f_2 (2 columns)
        short, mid, deep = blk.short(x), b.short(m), b.deep[1].short(b.deep[0].short(m))
        flat = (short + mid + deep) / 3
        nested = (short + (mid + deep) / 2) / 2
        got = torch.stack(cols).mean(0)
    assert torch.allclose(got, flat, atol=1e-6)
    assert not torch.allclose(got, nested, atol=1e-3)


def test_global_drop_path_keeps_one_column():
    torch.manual_seed(0)
    blk = create_model("fractalnet20", width=8).blocks[0].eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(blk(x, 0.0, 0)[0], blk.short(x))
        deepest = blk.deep[1].deep[1].short(blk.deep[1].deep[0].short(blk.deep[0].deep[1].short(
            blk.deep[0].deep[0].short(x))))
        assert torch.allclose(blk(x, 0.0, 2)[0], deepest)


def test_quarter_width_fractalnet20_is_larsson_table3_c3_count():
    """Larsson et al. 2017, Table 3: C = 3 columns at 16-32-64-128-128 channels has 2.1M parameters
    (config/reference/published_results.csv, LARSSON17_T3, depth 20). Table 1's 38.6M for the
    full-width network does not follow from the same layout (16x of 2.1M is 33.7M): not pinned."""
    import pandas as pd

    from debench.registry import create_model
    from tests.conftest import ROOT

    pub = pd.read_csv(ROOT / "config" / "reference" / "published_results.csv", dtype=str)
    row = pub[(pub.table_id == "LARSSON17_T3") & (pub.depth == "20")].iloc[0]
    n = sum(p.numel() for p in create_model("fractalnet20", num_classes=100, width=16).parameters())
    assert round(n / 1e6, 1) == float(row.params_m)
