"""Configuration of a transformers ResNet with the CIFAR stem (shipped with saved models; needs only transformers).

This file is written into every saved folder of such a model, so that it loads without the package that built it.
"""

from transformers import ResNetConfig


class CifarResNetConfig(ResNetConfig):
    """`ResNetConfig` under its own model type: transformers' ``resnet`` type would build the ImageNet stem and refuse
    the saved weights, while this type makes ``from_pretrained`` ask for the code shipped beside the weights."""

    model_type = "cifar_resnet"
