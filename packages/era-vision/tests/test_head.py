"""The ERA head on real timm models (tiny configs, random init, no downloads)."""

from __future__ import annotations

import pytest
import timm
import torch

import era_core
import era_vision

MODELS = {
    "resnet18": {},
    "vit_tiny_patch16_224": {"img_size": 32},
    "convnext_atto": {},
    "efficientnet_b0": {},
}
MIN_ENTROPY = 0.6


def _inputs(seed: int = 0, n: int = 4) -> torch.Tensor:
    return 50.0 * torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _sharpen_classifier(model: torch.nn.Module, factor: float = 1e3) -> None:
    """Blow up the classifier weights so the raw logits are extreme (near one-hot softmax)."""
    with torch.no_grad():
        for p in model.get_classifier().parameters():
            p.mul_(factor)


@pytest.fixture(params=sorted(MODELS))
def name(request):
    return request.param


@pytest.mark.parametrize("mode", ["paper", "exact"])
def test_entropy_floor_on_extreme_logits(name, mode):
    torch.manual_seed(0)
    model = era_vision.create_model(
        name, num_classes=10, min_entropy=MIN_ENTROPY, mode=mode, **MODELS[name]
    )
    _sharpen_classifier(model)
    plain_entropy = era_core.categorical_entropy(
        type(model).__mro__[2].forward_head(model, model.forward_features(_inputs()))
    )
    assert plain_entropy.min() < 0.05, "the test must reach near one-hot raw logits"
    for train in (True, False):
        model.train(train)
        z = model(_inputs())
        assert z.dtype == torch.float32 and z.shape == (4, 10)
        entropy = era_core.categorical_entropy(z.double())
        assert torch.isfinite(z).all()
        assert (entropy >= MIN_ENTROPY - 1e-6).all(), entropy
    if mode == "exact":  # tight: the near one-hot rows sit at the floor
        assert entropy.min() <= MIN_ENTROPY * 1.01


def test_entropy_floor_under_bf16_autocast(name):
    torch.manual_seed(0)
    model = era_vision.create_model(name, num_classes=10, min_entropy=MIN_ENTROPY, **MODELS[name])
    _sharpen_classifier(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model(_inputs())
    assert z.dtype == torch.float32, "the activation runs in float32 under autocast"
    assert (era_core.categorical_entropy(z.double()) >= MIN_ENTROPY - 1e-6).all()


def test_gradients_finite_and_loss_unchanged_in_form(name):
    torch.manual_seed(0)
    model = era_vision.create_model(
        name, num_classes=10, min_entropy=MIN_ENTROPY, mode="exact", **MODELS[name]
    )
    _sharpen_classifier(model)
    labels = torch.arange(4) % 10
    loss = torch.nn.functional.cross_entropy(model(_inputs()), labels, label_smoothing=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_output_is_softmax_era_of_the_plain_model(name):
    torch.manual_seed(0)
    plain = timm.create_model(name, num_classes=10, **MODELS[name]).eval()
    model = era_vision.create_model(
        name, num_classes=10, min_entropy=MIN_ENTROPY, **MODELS[name]
    ).eval()
    model.load_state_dict(plain.state_dict())  # a plain timm checkpoint loads as is
    x = _inputs(1)
    expected = era_core.softmax_era(plain(x), MIN_ENTROPY)
    torch.testing.assert_close(model(x), expected)
    # pre-logits and features are timm's own
    torch.testing.assert_close(model.forward_features(x), plain.forward_features(x))
    torch.testing.assert_close(
        model.forward_head(model.forward_features(x), pre_logits=True),
        plain.forward_head(plain.forward_features(x), pre_logits=True),
    )


def test_state_dict_round_trip_and_unwrap():
    model = era_vision.create_model("resnet18", num_classes=10, min_entropy=MIN_ENTROPY)
    plain = timm.create_model("resnet18", num_classes=10)
    assert model.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(model.state_dict())
    assert era_vision.era_config(model).min_entropy == MIN_ENTROPY
    era_vision.unwrap(model)
    assert type(model) is type(plain) and era_vision.era_config(model) is None
    x = _inputs(2)
    torch.testing.assert_close(model.eval()(x), plain.eval()(x))


def test_reset_classifier_checks_the_floor_and_zero_gives_features():
    model = era_vision.create_model("resnet18", num_classes=10, min_entropy=2.0)
    with pytest.raises(ValueError, match="min_entropy must be in"):
        model.reset_classifier(5)  # 2.0 > 1 + log(5 * log(4)/4) = 1.55
    model.reset_classifier(100)
    assert model(_inputs()).shape == (4, 100)
    model.reset_classifier(0)
    assert model(_inputs()).shape == (4, 512)  # pooled features, no head to floor


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"min_entropy must be in \(.*, 2.243\]"):
        era_vision.create_model("resnet18", num_classes=10, min_entropy=3.0)
    with pytest.raises(ValueError, match=r"did you mean.*resnet18"):
        era_vision.create_model("resnet_18", num_classes=10, min_entropy=0.6)
    with pytest.raises(ValueError, match="mode must be one of"):
        era_vision.create_model("resnet18", num_classes=10, min_entropy=0.6, mode="fast")
    with pytest.raises(TypeError, match="head contract"):
        era_vision.wrap(torch.nn.Linear(3, 3), 0.6)


def test_wrap_twice_only_replaces_settings():
    model = timm.create_model("resnet18", num_classes=10)
    era_vision.wrap(model, 0.6)
    cls = type(model)
    era_vision.wrap(model, 1.0, mode="exact")
    assert type(model) is cls
    assert era_vision.era_config(model) == era_vision.ERAConfig(1.0, 4.0, "exact")
