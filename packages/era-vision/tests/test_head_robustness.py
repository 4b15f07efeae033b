"""The ERA head across timm families and their odd heads (random init, tiny inputs, no downloads).

A sweep over a curated list of families (as timm's own tests sweep ``list_models``): create,
forward in train and eval mode, floor held, exact mode tight on a one-hot input, state-dict
round trip, pickle. Then the heads that are not one tensor: distilled models in distilled
training, inception's auxiliary classifier, and float16 logits that overflow to inf.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import timm
import torch

import era_core
import era_vision

MIN_ENTROPY = 0.6
NUM_CLASSES = 10

# name -> (create_model kwargs, input size); the smallest member of each family.
SWEEP = {
    "test_resnet": ({}, 32),
    "test_byobnet": ({}, 32),
    "test_nfnet": ({}, 32),
    "test_efficientnet": ({}, 32),
    "test_convnext": ({}, 32),
    "test_vit": ({"img_size": 32}, 32),
    "test_mambaout": ({}, 32),
    "mobilenetv3_small_050": ({}, 32),
    "regnetx_002": ({}, 32),
    "ghostnet_050": ({}, 32),
    "convnext_atto": ({}, 32),
    "deit_tiny_distilled_patch16_224": ({"img_size": 32}, 32),
    "levit_128s": ({"img_size": 64}, 64),
    "mixer_s16_224": ({"img_size": 32}, 32),
}


def _entropy(z: torch.Tensor) -> torch.Tensor:
    return era_core.categorical_entropy(z.detach().double())


def _outputs(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _one_hot_bias(model: torch.nn.Module) -> None:
    """Classifier bias (0, 1e4, 0, ...): the raw logits are one-hot, the exact floor's worst case."""
    heads = model.get_classifier()
    with torch.no_grad():
        for head in heads if isinstance(heads, (tuple, list)) else (heads,):
            linear = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
            linear.weight.zero_()
            linear.bias.zero_()
            linear.bias[1] = 1e4


def _pickled(model: torch.nn.Module) -> torch.nn.Module:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name", sorted(SWEEP))
def test_sweep_over_timm_families(name):
    kwargs, size = SWEEP[name]
    torch.manual_seed(0)
    model = era_vision.create_model(
        name, num_classes=NUM_CLASSES, min_entropy=MIN_ENTROPY, mode="exact", **kwargs
    )
    x = 5.0 * torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    for train in (True, False):
        model.train(train)
        for z in _outputs(model(x)):
            assert z.shape == (2, NUM_CLASSES) and torch.isfinite(z).all()
            assert (_entropy(z) >= MIN_ENTROPY - 1e-6).all()
    model.eval()
    _one_hot_bias(model)
    with torch.no_grad():
        z = model(x)
    h = _entropy(z)
    assert (h >= MIN_ENTROPY - 1e-6).all() and (h <= MIN_ENTROPY * 1.01).all(), h

    plain = timm.create_model(name, num_classes=NUM_CLASSES, **kwargs).eval()
    assert plain.load_state_dict(model.state_dict()).missing_keys == []
    with torch.no_grad():
        torch.testing.assert_close(era_core.softmax_era(plain(x), MIN_ENTROPY, mode="exact"), z)
        again = _pickled(model)
        assert type(again) is type(model) and era_vision.era_config(again) == model._era
        torch.testing.assert_close(again(x), z)


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224", "efficientnet_b0"])
def test_pickle_round_trips_keep_the_head(name):
    kwargs = {"img_size": 32} if name.startswith("vit") else {}
    model = era_vision.create_model(
        name, num_classes=NUM_CLASSES, min_entropy=1.0, mode="exact", **kwargs
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for again in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), _pickled(model)):
            assert type(again) is type(model) and isinstance(again, type(model).__mro__[2])
            assert era_vision.era_config(again) == era_vision.ERAConfig(1.0, 4.0, "exact")
            torch.testing.assert_close(again(x), expected)
    era_vision.unwrap(model)
    assert type(pickle.loads(pickle.dumps(model))) is type(model)  # plain again


@pytest.mark.parametrize(
    ("name", "size"), [("deit_tiny_distilled_patch16_224", 32), ("levit_128s", 64)]
)
def test_distilled_training_floors_both_heads(name, size):
    torch.manual_seed(0)
    plain = timm.create_model(name, num_classes=NUM_CLASSES, img_size=size)
    model = era_vision.create_model(
        name, num_classes=NUM_CLASSES, min_entropy=MIN_ENTROPY, img_size=size
    )
    model.load_state_dict(plain.state_dict())
    for m in (plain, model):
        m.set_distilled_training(True)
        m.train()
    x = torch.randn(2, 3, size, size)
    torch.manual_seed(3)
    cls_logits, dist_logits = model(x)
    torch.manual_seed(3)
    raw_cls, raw_dist = plain(x)
    torch.testing.assert_close(cls_logits, era_core.softmax_era(raw_cls, MIN_ENTROPY))
    torch.testing.assert_close(dist_logits, era_core.softmax_era(raw_dist, MIN_ENTROPY))
    labels = torch.tensor([1, 2])
    loss = sum(torch.nn.functional.cross_entropy(z, labels) for z in (cls_logits, dist_logits))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    for m in (plain, model):
        m.eval()
    with torch.no_grad():  # inference: ERA of timm's average of the two heads
        torch.testing.assert_close(model(x), era_core.softmax_era(plain(x), MIN_ENTROPY))


def test_inception_auxiliary_logits_are_floored():
    torch.manual_seed(0)
    model = era_vision.create_model(
        "inception_v3", num_classes=NUM_CLASSES, min_entropy=MIN_ENTROPY, aux_logits=True
    )
    with torch.no_grad():
        model.AuxLogits.fc.weight.mul_(1e4)  # near one-hot raw auxiliary logits
    x = torch.randn(2, 3, 299, 299)  # the auxiliary branch needs 17x17 maps
    main, aux = model.train()(x)
    for z in (main, aux):
        assert (_entropy(z) >= MIN_ENTROPY - 1e-6).all(), _entropy(z)
    assert isinstance(pickle.loads(pickle.dumps(model)).AuxLogits, type(model.AuxLogits))
    era_vision.unwrap(model)
    assert type(model.AuxLogits).__name__ == "InceptionAux"
    _, raw_aux = model.eval()(x)
    assert _entropy(raw_aux).min() < 0.05  # what the floor prevented


@pytest.mark.parametrize("mode", ["paper", "exact"])
def test_float16_overflowing_logits_stay_finite_with_the_floor(mode):
    """Classifier weights so large that the float16 logits overflow to +-inf under autocast."""
    torch.manual_seed(0)
    model = era_vision.create_model(
        "resnet18", num_classes=NUM_CLASSES, min_entropy=MIN_ENTROPY, mode=mode
    ).eval()
    with torch.no_grad():
        model.fc.weight.mul_(1e6)
    x = torch.randn(4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.float16), torch.no_grad():
        raw = type(model).__mro__[2].forward_head(model, model.forward_features(x))
        z = model(x)
    assert raw.dtype == torch.float16 and torch.isinf(raw).any(), "the test needs overflow"
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    h = _entropy(z)
    assert (h >= MIN_ENTROPY - 1e-6).all(), h
    if mode == "exact":
        assert h.min() <= MIN_ENTROPY * 1.01
