"""era_vision.create_model's options used by the app: a plain model, img_size, the name check."""

from __future__ import annotations

import pytest
import timm
import torch

import era_vision


def test_min_entropy_none_is_the_plain_timm_model():
    torch.manual_seed(0)
    model = era_vision.create_model("test_resnet", num_classes=10, min_entropy=None)
    torch.manual_seed(0)
    plain = timm.create_model("test_resnet", num_classes=10)
    assert type(model) is type(plain) and era_vision.era_config(model) is None
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model.eval()(x), plain.eval()(x), rtol=0, atol=0)


def test_img_size_reaches_models_that_take_it_only():
    vit = era_vision.create_model("vit_tiny_patch16_224", num_classes=10, min_entropy=0.6,
                                  img_size=32)  # fmt: skip
    assert vit.patch_embed.img_size == (32, 32)
    cnn = era_vision.create_model("test_resnet", num_classes=10, min_entropy=0.6, img_size=32)
    assert cnn.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_check_model_name():
    era_vision.check_model_name("resnet18")
    era_vision.check_model_name("hf-hub:timm/resnet18.a1_in1k")
    with pytest.raises(ValueError, match=r"unknown timm model name 'resnet_18'; did you mean"):
        era_vision.check_model_name("resnet_18")
    with pytest.raises(ValueError, match=r"see timm.list_models\(\)"):
        era_vision.check_model_name("zzzzzzzz")
