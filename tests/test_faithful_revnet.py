"""RevNets: the authors' architecture (revnet-public) and MemCNN's, counted by hand (issue 27, point 1).

Sources: renmengye/revnet-public@5486f61 ``resnet/configs/cifar_configs.py`` (revnet-38: filters
[32, 32, 64, 112], units [3, 3, 3]; revnet-110: [32, 32, 64, 128], [9, 9, 9]; revnet-164: the
same with bottlenecks, filters x 4 after the stem), ``resnet/models/revnet_model.py`` and
``resnet_model.py`` (every unit a coupling on the halves, F and G each [BN-ReLU]-conv blocks on
in/2 -> out/2 channels; the first unit of stage 1 has no BN-ReLU before F's first conv;
average-pool + zero-pad shortcuts for basic units, one 1x1 projection per half for bottleneck
units; 3x3 stem conv + BN, final BN, linear with bias). MemCNN: silvandeleemput/memcnn@439ac26
``memcnn/models/resnet.py`` with ``memcnn/config/experiments.json``.

Each count below is written out stage by stage from those files (conv k*k*in*out, no bias;
BN 2 per channel), not computed by debench code.
"""

import copy

import pytest
import torch

from debench.registry import create_model, model_info
from debench.train.measure import count_parameters

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning")]

# revnet-public. Basic F/G with BN-ReLU on c channels in, c' out: 2c + 9cc' + 2c' + 9c'c'.
AUTHORS = {
    38: sum([
        27 * 32 + 64,                                   # stem conv 3->32, BN: 928
        4640 + 4672 + 2 * (4672 + 4672),                # stage 1, halves 16 (first F without BN): 28,000
        13920 + 18560 + 2 * (18560 + 18560),            # stage 2, halves 16->32 strided: 106,720
        44528 + 56672 + 2 * (56672 + 56672),            # stage 3, halves 32->56: 327,888
        224 + 112 * 10 + 10,                            # final BN 112, linear: 1,354
    ]),                                                 # = 464,890
    110: sum([
        928,
        4640 + 4672 + 8 * (4672 + 4672),                # 84,064
        13920 + 18560 + 8 * (18560 + 18560),            # 329,440
        55488 + 73984 + 8 * (73984 + 73984),            # halves 32->64: 1,313,216
        256 + 128 * 10 + 10,                            # 1,546
    ]),                                                 # = 1,729,194
    # bottleneck F/G on c in, c' out, m = c'/4: 2c + cm + 2m + 9mm + 2m + mc'; projections 2 x c c'
    164: sum([
        928,
        3648 + 4544 + 2 * 16 * 64 + 8 * (4544 + 4544),          # halves 16->64: 82,944
        15616 + 17792 + 2 * 64 * 128 + 8 * (17792 + 17792),     # halves 64->128: 334,464
        61952 + 70400 + 2 * 128 * 256 + 8 * (70400 + 70400),    # halves 128->256: 1,324,288
        1024 + 512 * 10 + 10,                                   # 6,154
    ]),                                                         # = 1,748,778
}

# MemCNN: the first block of a shape-changing stage is a full-width residual block (convs over all
# channels) with a 1x1 conv + BN shortcut; stage 1's first coupling drops BN-ReLU in F and G.
MEMCNN = {
    38: sum([
        928,
        4640 + 4640 + 2 * (4672 + 4672),                # 27,968
        (64 + 18432 + 128 + 36864) + (2048 + 128) + 2 * (18560 + 18560),     # 131,904
        (128 + 64512 + 224 + 112896) + (7168 + 224) + 2 * (56672 + 56672),   # 411,840
        1354,
    ]),                                                 # = 573,994
    110: sum([
        928,
        4640 + 4640 + 8 * (4672 + 4672),                # 84,032
        55488 + 2176 + 8 * (18560 + 18560),             # 354,624
        (128 + 73728 + 256 + 147456) + (8192 + 256) + 8 * (73984 + 73984),  # 1,413,760
        1546,
    ]),                                                 # = 1,854,890
    164: sum([
        928,
        (1024 + 64 + 9216 + 64 + 4096) + (4096 + 256) + 8 * (4544 + 4544),                      # 91,520
        (256 + 8192 + 128 + 36864 + 128 + 16384) + (32768 + 512) + 8 * (17792 + 17792),         # 379,904
        (512 + 32768 + 256 + 147456 + 256 + 65536) + (131072 + 1024) + 8 * (70400 + 70400),    # 1,505,280
        6154,
    ]),                                                 # = 1,983,786
}


def test_hand_counts_are_the_numbers_quoted_in_the_issue_and_memcnn_readme():
    assert [AUTHORS[d] for d in (38, 110, 164)] == [464_890, 1_729_194, 1_748_778]
    assert [MEMCNN[d] for d in (38, 110, 164)] == [573_994, 1_854_890, 1_983_786]  # memcnn README table


@pytest.mark.parametrize("depth", [38, 110, 164])
def test_revnet_is_the_authors_architecture(depth):
    assert count_parameters(create_model(f"revnet{depth}")) == AUTHORS[depth]


@pytest.mark.parametrize("depth", [38, 110, 164])
def test_memcnn_variant_is_memcnns_architecture(depth):
    assert count_parameters(create_model(f"memcnn_revnet{depth}")) == MEMCNN[depth]


def test_each_model_compares_with_the_rows_of_its_own_architecture():
    for depth in (38, 110, 164):
        (ours,) = model_info(f"revnet{depth}").reference
        (theirs,) = model_info(f"memcnn_revnet{depth}").reference
        assert ours["variant"] == "revnet-public TensorFlow" and theirs["variant"] == "memcnn PyTorch"
        assert ours["depth"] == theirs["depth"] == str(depth)


# ---------------------------------------------------------------- parity with the memcnn package

def memcnn_model(depth: int, classes: int = 10):
    memcnn_resnet = pytest.importorskip("memcnn.models.resnet")
    layers = [3, 3, 3] if depth == 38 else [9, 9, 9]
    block = memcnn_resnet.RevBottleneck if depth == 164 else memcnn_resnet.RevBasicBlock
    channels = [32, 32, 64, 112] if depth == 38 else [32, 32, 64, 128]
    return memcnn_resnet.ResNet(block, layers, num_classes=classes, channels_per_layer=channels,
                                strides=[1, 1, 2, 2], init_max_pool=False, init_kernel_size=3, batch_norm_fix=False)


def memcnn_params(m) -> list:
    """memcnn's parameters in forward order: stem, then per block F, G (or sub, shortcut), final."""
    out = [*m.conv1.parameters(), *m.bn1.parameters()]
    for layer in (m.layer1, m.layer2, m.layer3):
        for blk in layer:
            if hasattr(blk, "revblock"):
                out += [*blk.revblock._fn.Fm.parameters(), *blk.revblock._fn.Gm.parameters()]
            else:
                sub = getattr(blk, "basicblock_sub", None) or blk.bottleneck_sub
                out += [*sub.parameters(), *blk.downsample.parameters()]
    return out + [*m.bn_final.parameters(), *m.fc.parameters()]


def debench_params(m) -> list:
    out = [*m.stem.parameters()]
    for stage in m.stages:
        for unit in stage:
            if hasattr(unit, "shears"):
                out += [p for s in unit.shears for p in s.phi.parameters()]
            else:
                out += [*unit.sub.parameters(), *unit.shortcut.parameters()]
    return out + [*m.final.parameters(), *m.head.parameters()]


@pytest.mark.parametrize("depth", [38, 110, 164])
def test_memcnn_variant_matches_the_memcnn_package_output(depth):
    """memcnn's own ResNet (RevBasicBlock / RevBottleneck, experiments.json settings) and
    ``memcnn_revnet<depth>`` with the same weights give the same logits (float64, batch stats).
    The authors' ``revnet<depth>`` has other shapes (a wrong model fails the copy)."""
    torch.manual_seed(depth)
    ref = memcnn_model(depth).double().train()
    ours = create_model(f"memcnn_revnet{depth}").double().train()
    assert count_parameters(ref) == count_parameters(ours) == MEMCNN[depth]
    a, b = memcnn_params(ref), debench_params(ours)
    assert [p.shape for p in a] == [p.shape for p in b]
    with torch.no_grad():
        for p, q in zip(a, b):
            q.copy_(p + 0.01 * torch.randn_like(p) * (p.dim() == 1))  # BN/bias not at their init values
            p.copy_(q)
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        want = ref(x.clone())
        got = ours(x.clone())
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-10)
    authors = list(create_model(f"revnet{depth}").parameters())
    assert [p.shape for p in authors] != [p.shape for p in b]
