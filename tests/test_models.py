"""Every registered family x several sampled configs: output shape, finite output, parameter count equal
to an independent count from the architecture's formulas, MACs positive and monotone in width."""
from __future__ import annotations

import random

import optuna
import pytest
import torch

import models
from search.measure import count_macs, count_params
from search.catalogue import DATASETS, Meta


def conv(cin, cout, k, bias=False, bn=True, separable=False):
    p = cin * k * k + cin * cout if separable else cin * cout * k * k
    return p + (cout if bias else 0) + (2 * cout if bn else 0)


def expected_convnet(c) -> int:
    """Written from the architecture, not from the module: sizes are tracked by hand."""
    total, cin, k = 0, c["in_channels"], c["kernel_size"]
    h, w = c["image_size"] if isinstance(c["image_size"], (list, tuple)) else (c["image_size"],) * 2
    pools = c.get("pools") or [i > 0 for i in range(len(c["widths"]))]
    for i, (width, d, pool) in enumerate(zip(c["widths"], c["depths"], pools)):
        if d == 0:
            continue
        strided = pool and c["transition"] == "stride"
        if pool and not strided:
            h, w = h // 2, w // 2
            if c["transition"] == "pool_1x1":
                sq = max(1, round(c["squeeze"] * cin))
                total += conv(cin, sq, 1, c["bias"], c["bn"])
                cin = sq
        for j in range(d):
            total += conv(cin, width, k, c["bias"], c["bn"], c["separable"] and not (i == 0 and j == 0))
            if strided and j == 0:
                h, w = (h + 1) // 2, (w + 1) // 2
            elif c.get("padding") == "valid" and min(h, w) >= k + 2:  # unpadded where both sides allow it
                h, w = h - (k - 1), w - (k - 1)
            cin = width
    if c["final_pool"]:
        h, w = h // 2, w // 2
    b = 1 if c["bias"] else 0
    if c["head"] == "flatten_fc":
        cin *= h * w
    if c["head"] != "gap" and c["fc_width"]:
        total += cin * c["fc_width"] + b * c["fc_width"]
        cin = c["fc_width"]
    return total + cin * c["num_classes"] + c["num_classes"]  # the classifier always has a bias


def expected_resnet(c) -> int:
    total, cin = conv(c["in_channels"], c["stem_width"], 3), c["stem_width"]
    for i, (w, d) in enumerate(zip(c["widths"], c["depths"])):
        for j in range(d):
            stride = 2 if i > 0 and j == 0 else 1
            total += conv(cin, w, 3) + conv(w, w, 3) + (conv(cin, w, 1) if stride != 1 or cin != w else 0)
            cin = w
    return total + cin * c["num_classes"] + c["num_classes"]


def expected_mobilenet(c) -> int:
    total, cin = conv(c["in_channels"], c["stem_width"], 3), c["stem_width"]
    e, k = c["expansion"], c["kernel_size"]
    for w, d in zip(c["widths"], c["depths"]):
        for _ in range(d):
            h = cin * e
            total += (conv(cin, h, 1) if e != 1 else 0) + h * k * k + 2 * h + conv(h, w, 1)
            cin = w
    return total + cin * c["num_classes"] + c["num_classes"]


EXPECTED = {"convnet": expected_convnet, "resnet": expected_resnet, "mobilenet": expected_mobilenet}


def sample_config(family: str, rng: random.Random, shape: tuple | None = None) -> dict:
    """A random config; `shape` (channels, image_size, classes), else a built-in dataset's."""
    ds = rng.choice(list(DATASETS.values()))
    channels, size, classes = shape or (ds.channels, ds.height, ds.classes)
    n = rng.randint(1, 3)
    c = {"in_channels": channels, "num_classes": classes, "image_size": size,
         "widths": [rng.randint(2, 24) for _ in range(n)], "depths": [rng.randint(1, 3) for _ in range(n)]}
    if family == "convnet":
        c["depths"] = [c["depths"][0]] + [rng.randint(0, 3) for _ in range(n - 1)]
        c.update(pools=[False] + [rng.random() < 0.7 for _ in range(n - 1)], padding=rng.choice(["same", "valid"]))
        c.update(kernel_size=rng.choice([1, 3, 5]), separable=rng.random() < 0.5,
                 transition=rng.choice(["pool", "pool_1x1", "stride"]), final_pool=rng.random() < 0.5, squeeze=rng.choice([0.5, 1.0]),
                 head=rng.choice(["gap", "gap_fc", "flatten_fc"]), fc_width=rng.choice([0, 16]),
                 dropout=rng.choice([0.0, 0.1]), fc_dropout=rng.choice([0.0, 0.2]), bn=rng.random() < 0.7,
                 bias=rng.random() < 0.5)
    elif family == "resnet":
        c.update(stem_width=rng.randint(4, 16), dropout=rng.choice([0.0, 0.1]))
    else:
        c.update(stem_width=rng.randint(4, 16), expansion=rng.randint(1, 4), kernel_size=rng.choice([3, 5]))
    return c


CASES = [(f, seed) for f in models.names() for seed in range(4)] + [("convnet", seed) for seed in range(4, 12)]


def test_every_family_has_an_independent_count():
    assert set(models.names()) == set(EXPECTED)


@pytest.mark.parametrize("family,seed", CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_family(family, seed):
    cfg = sample_config(family, random.Random(seed))
    model = models.build(family, **cfg)
    x = torch.rand(3, cfg["in_channels"], *models.hw(cfg["image_size"]))
    out = model(x)
    assert out.shape == (3, cfg["num_classes"])
    assert torch.isfinite(out).all()
    assert count_params(model) == EXPECTED[family](cfg)
    meta = Meta(cfg["in_channels"], *models.hw(cfg["image_size"]), tuple(map(str, range(cfg["num_classes"]))))
    macs = count_macs(model, meta)
    wider = models.build(family, **{**cfg, "widths": [2 * w for w in cfg["widths"]]})
    assert 0 < macs < count_macs(wider, meta)
    rebuilt = models.build(family, **{k: list(v) if isinstance(v, tuple) else v for k, v in vars(model.config).items()})
    assert count_params(rebuilt) == count_params(model)


SHAPES = [(ch, size, classes) for ch in (1, 3) for size in (16, 28, 32, 64, 96, [40, 24]) for classes in (2, 10, 100)]


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_every_family_builds_at_every_input_shape(family):
    """1 and 3 channels, 16-96 px and a non-square 40x24, 2-100 classes: a forward pass of the right shape and the
    parameter count of the independent formulas, for random configs (those that fit the map: a convnet whose
    transitions shrink a 16-px input below a pixel is refused with a ValueError, as the search expects)."""
    rng, built = random.Random(7), 0
    for shape in SHAPES:
        for _ in range(3):
            cfg = sample_config(family, rng, shape)
            try:
                model = models.build(family, **cfg)
            except ValueError as e:
                assert "below 1 pixel" in str(e)
                continue
            out = model(torch.rand(2, shape[0], *models.hw(shape[1])))
            assert out.shape == (2, shape[2]) and count_params(model) == EXPECTED[family](cfg), (shape, cfg)
            built += 1
    assert built >= 2 * len(SHAPES)


def test_macs_of_a_known_layer():
    """fvcore counts one multiply-add as one: a 3x3 conv 1->8 at 28x28 'same' is 28*28*8*9 MACs."""
    net = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
    net.family, net.config = "conv", None
    assert count_macs(net, DATASETS["mnist"]) == 28 * 28 * 8 * 9


def test_seed_designs_are_expressible():
    """The seed tasks' hand-tuned nets in the convnet family, and in the shipped MNIST space."""
    # conv3x3 1->8, 8->12, 12->16 unpadded, maxpool, conv1x1 16->8, conv3x3 8->12, 12->16, 16->16 unpadded, GAP, linear.
    hand = dict(widths=[8, 12, 16, 12, 16], depths=[1, 1, 1, 1, 2], pools=[0, 0, 0, 1, 0], transition="pool_1x1",
                squeeze=0.5, padding="valid", head="gap", dropout=0.05)
    mnist = models.build("convnet", **hand)
    assert count_params(mnist) == 8034  # exactly the seed reports' count
    assert mnist.features(torch.zeros(1, 1, 28, 28)).shape[-1] == 5  # 28 -> 26 -> 24 -> 22, pool 11 -> 9 -> 7 -> 5
    assert [m.padding for m in mnist.modules() if isinstance(m, torch.nn.Conv2d)] == [(0, 0)] * 7
    # ... and the same net is a point of spaces/mnist_8k.yaml (with fill off, so widths are taken as sampled)
    from helpers import ROOT
    from search import space as S

    raw = S.read_yaml((ROOT / "spaces" / "mnist_8k.yaml").read_text())
    raw["budget"]["fill"] = False
    space = S.parse(raw)
    point = {"model.stage0.width": 8, "model.stage0.depth": 1, "model.stage1.width": 12, "model.stage1.depth": 1,
             "model.stage2.width": 16, "model.stage2.depth": 1, "model.stage3.width": 12, "model.stage3.depth": 1,
             "model.stage4.width": 16, "model.stage4.depth": 2, "model.stage4.pool": False, "model.padding": "valid",
             "model.transition": "pool_1x1", "model.squeeze": 0.5, "model.head": "gap", "model.fc_width": 0,
             "model.dropout": 0.05}
    rest = {n: p.choices[0] if p.choices else p.low for n, p in space.params().items() if p.value is None}
    cand = space.sample(optuna.trial.FixedTrial(rest | point), DATASETS["mnist"])
    assert count_params(cand.build()) == 8034
    cifar100 = models.build("convnet", in_channels=3, num_classes=100, image_size=32, widths=[32, 64, 128],
                            depths=[1, 1, 1], final_pool=True, head="flatten_fc", fc_width=420, fc_dropout=0.2, bias=True)
    assert count_params(cifar100) == 996_376  # exactly the report's count
    svhn = models.build("convnet", in_channels=3, image_size=32, widths=[32, 64, 128], depths=[2, 2, 2],
                        kernel_size=5, separable=True, dropout=0.05)
    assert count_params(svhn) < 150_000


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: convnet, mobilenet, resnet"):
        models.build("vit")


def test_dropout_keeps_each_activation_with_probability_1_minus_p_and_scales_it():
    """models.dropout.Dropout: the share kept matches 1 - p (within 5 binomial standard deviations on 4M draws),
    kept values are scaled by 1 / (1 - p), the gradient flows through the kept ones only, a seed repeats the
    mask, and eval mode is the identity."""
    from models.dropout import Dropout

    x = torch.ones(64, 16, 64, 64)
    for p in (0.05, 0.3):
        drop = Dropout(p).train()
        torch.manual_seed(0)
        y = drop(x.requires_grad_())
        kept = y != 0
        share, sd = kept.float().mean().item(), ((1 - p) * p / x.numel()) ** 0.5
        assert abs(share - (1 - p)) < 5 * sd, (p, share)
        assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
        y.sum().backward()
        assert torch.equal(x.grad != 0, kept)
        x.grad = None
        torch.manual_seed(0)
        assert torch.equal(drop(x) != 0, kept)
    # NHWC activations (CPU workers, GPUs) get the mask in their own layout: same law, same layout out
    nhwc = torch.ones(64, 16, 64, 64).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = Dropout(0.3).train()(nhwc)
    assert y.is_contiguous(memory_format=torch.channels_last)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 5 * (0.7 * 0.3 / y.numel()) ** 0.5
    assert kept.float().mean(dim=(0, 2, 3)).min() > 0.68  # every channel drops at the rate, not some channels all
    y.sum().backward()
    assert torch.equal(nhwc.grad != 0, kept)
    assert Dropout(0.3).eval()(x) is x
