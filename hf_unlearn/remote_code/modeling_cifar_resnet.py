"""A transformers ResNet with the CIFAR stem (shipped with saved models; needs only torch and transformers).

The CIFAR ResNets replace the ImageNet stem (7x7 stride-2 convolution, 3x3 stride-2 max-pool) by a 3x3 stride-1
convolution and no max-pool, so a 32x32 input keeps a 32x32 first feature map. Everything else, parameter names
included, is transformers' `ResNetForImageClassification`. This file is written into every saved folder of such a
model, so that ``from_pretrained(folder, trust_remote_code=True)`` loads it without the package that built it.
"""

from torch import nn
from transformers import ResNetForImageClassification

from .configuration_cifar_resnet import CifarResNetConfig


class CifarResNetForImageClassification(ResNetForImageClassification):
    """`ResNetForImageClassification` with the CIFAR stem."""

    config_class = CifarResNetConfig

    def __init__(self, config: CifarResNetConfig) -> None:
        super().__init__(config)
        embeddings = self.resnet.embedder
        old = embeddings.embedder.convolution
        embeddings.embedder.convolution = nn.Conv2d(
            old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False
        )
        embeddings.pooler = nn.Identity()
        # post_init initialises only the modules not yet initialised (the new convolution, with the ResNet's own
        # Kaiming fan-out init), so a seed gives the weights of a ResNet whose stem was swapped after it was built.
        self.post_init()
