"""The timm contract of an ERA model: compile, channels-last, checkpoints, features, DDP, modes."""

from __future__ import annotations

import socket

import pytest
import timm
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import era_core
import era_vision

MIN_ENTROPY = 0.6


def _inputs(seed: int = 0, n: int = 4, scale: float = 50.0) -> torch.Tensor:
    return scale * torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _pair(name: str, **kwargs):
    """A plain timm model and an ERA model with the same weights."""
    torch.manual_seed(0)
    plain = timm.create_model(name, num_classes=10, **kwargs)
    model = era_vision.create_model(name, num_classes=10, min_entropy=MIN_ENTROPY, **kwargs)
    model.load_state_dict(plain.state_dict())
    return plain, model


def test_torch_compile_equals_eager():
    _, model = _pair("resnet18")
    model.eval()
    x = _inputs()
    compiled = torch.compile(model)
    with torch.no_grad():
        eager, out = model(x), compiled(x)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    assert (era_core.categorical_entropy(out.double()) >= MIN_ENTROPY - 1e-6).all()


@pytest.mark.parametrize("name", ["resnet18", "convnext_atto", "efficientnet_b0"])
def test_channels_last_matches_contiguous(name):
    _, model = _pair(name)
    model.eval()
    x = _inputs(1)
    with torch.no_grad():
        expected = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    assert (era_core.categorical_entropy(out.double()) >= MIN_ENTROPY - 1e-6).all()


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("vit_tiny_patch16_224", {"img_size": 32}), ("efficientnet_b0", {})],
)
def test_plain_checkpoint_file_loads_strictly(tmp_path, name, kwargs):
    torch.manual_seed(1)
    plain = timm.create_model(name, num_classes=10, **kwargs).eval()
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    torch.manual_seed(2)  # different init: the load must overwrite everything
    model = era_vision.create_model(name, num_classes=10, min_entropy=MIN_ENTROPY, **kwargs)
    result = model.load_state_dict(torch.load(tmp_path / "plain.pth", weights_only=True))
    assert not result.missing_keys and not result.unexpected_keys
    x = _inputs(3, scale=1.0)
    torch.testing.assert_close(model.eval()(x), era_core.softmax_era(plain(x), MIN_ENTROPY))


def test_features_only_is_timms_extractor():
    torch.manual_seed(0)
    plain = timm.create_model("resnet18", features_only=True, out_indices=(1, 3))
    model = era_vision.create_model(
        "resnet18", num_classes=10, min_entropy=MIN_ENTROPY, features_only=True, out_indices=(1, 3)
    )
    assert type(model) is type(plain) and era_vision.era_config(model) is None
    model.load_state_dict(plain.state_dict())
    x = _inputs(scale=1.0)
    for a, b in zip(model(x), plain(x), strict=True):
        torch.testing.assert_close(a, b)
    assert model.feature_info.channels() == plain.feature_info.channels() == [64, 256]


@pytest.mark.parametrize(
    ("name", "kwargs"), [("resnet18", {}), ("vit_tiny_patch16_224", {"img_size": 32})]
)
def test_forward_features_and_reset_classifier_as_timm(name, kwargs):
    plain, model = _pair(name, **kwargs)
    plain.eval(), model.eval()
    x = _inputs(scale=1.0)
    torch.testing.assert_close(model.forward_features(x), plain.forward_features(x))
    assert model.get_classifier().weight.shape == plain.get_classifier().weight.shape
    for m in (plain, model):
        m.reset_classifier(7)
    torch.manual_seed(5)
    model.get_classifier().reset_parameters()
    torch.manual_seed(5)
    plain.get_classifier().reset_parameters()
    z = model(x)
    assert z.shape == (4, 7) and model.num_classes == plain.num_classes == 7
    torch.testing.assert_close(z, era_core.softmax_era(plain(x), MIN_ENTROPY))
    for m in (plain, model):
        m.reset_classifier(0)
    torch.testing.assert_close(model(x), plain(x))  # pooled features, no head


def test_train_and_eval_modes_behave_as_timm():
    plain, model = _pair("resnet18", drop_rate=0.5)
    x = _inputs(scale=1.0)
    for m in (plain, model):
        m.train()
    torch.manual_seed(7)
    z_train = model(x)
    torch.manual_seed(7)
    torch.testing.assert_close(z_train, era_core.softmax_era(plain(x), MIN_ENTROPY))
    # batch-norm running statistics moved identically in train mode
    torch.testing.assert_close(model.bn1.running_mean, plain.bn1.running_mean)
    assert not torch.equal(model.bn1.running_mean, torch.zeros(64))
    stats = model.bn1.running_mean.clone()
    model.eval()
    assert not model.training and all(not m.training for m in model.modules())
    a, b = model(x), model(x)
    torch.testing.assert_close(a, b)  # dropout off, deterministic
    torch.testing.assert_close(model.bn1.running_mean, stats)  # frozen in eval
    assert (era_core.categorical_entropy(a.double()) >= MIN_ENTROPY - 1e-6).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_world_size_one_gloo():
    plain, model = _pair("resnet18")
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        ddp = DistributedDataParallel(model)
        x, y = _inputs(scale=1.0), torch.tensor([0, 1, 2, 3])
        z = ddp(x)
        assert (era_core.categorical_entropy(z.double()) >= MIN_ENTROPY - 1e-6).all()
        torch.nn.functional.cross_entropy(z, y).backward()
        torch.nn.functional.cross_entropy(era_vision.era_logits(plain(x), model._era), y).backward()
        for p, q in zip(ddp.module.parameters(), plain.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)
        assert isinstance(ddp.module, type(model)) and era_vision.era_config(ddp.module)
    finally:
        dist.destroy_process_group()
