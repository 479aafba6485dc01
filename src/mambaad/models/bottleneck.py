"""Half-FPN bottleneck: multi-scale feature fusion + one-class embedding (MambaAD Fig. 2, "H-FPN").

It fuses the encoder's three maps top-down into one stride-16 map, then compresses it with three
ResNet bottleneck blocks (the first with stride 2) into the decoder's input at stride 32. This is
the only place where BatchNorm trains. Widths derive from the encoder's channels (c1, c2, c3); the
output has 2 * c3 channels (ResNet34: 64/128/256 -> 512 x 8 x 8 for a 256 x 256 input).
"""

from __future__ import annotations

from timm.models.resnet import Bottleneck
from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """Conv2d -> BatchNorm2d -> ReLU (bias only on the 1x1 fusion convs, as in the paper's code)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=bias)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU(inplace=True)


class HalfFPNBottleneck(nn.Module):
    """Fuse (f1, f2, f3) at strides 4/8/16 and embed them into one (2*c3)-channel map at stride 32."""

    def __init__(self, channels: list[int], num_blocks: int = 3) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.out_channels = 2 * c3
        self.down1 = ConvBNReLU(c1, c2, 3, stride=2)  # f1 -> stride 8
        self.lateral2 = ConvBNReLU(c2, c2, 1, bias=True)
        self.down2 = ConvBNReLU(c2, c3, 3, stride=2)  # -> stride 16
        self.lateral3 = ConvBNReLU(c3, c3, 1, bias=True)
        self.fuse = ConvBNReLU(c3, c3, 1, bias=True)
        planes = self.out_channels // Bottleneck.expansion
        downsample = nn.Sequential(
            nn.Conv2d(c3, self.out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(self.out_channels)
        )
        blocks = [Bottleneck(c3, planes, stride=2, downsample=downsample)]
        blocks += [Bottleneck(self.out_channels, planes) for _ in range(num_blocks - 1)]
        self.oce = nn.Sequential(*blocks)  # one-class embedding
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> Tensor:
        f1, f2, f3 = feats
        x = self.lateral2(f2) + self.down1(f1)  # (B, c2, H/8, W/8)
        x = self.down2(x) + self.lateral3(f3)  # (B, c3, H/16, W/16)
        x = self.fuse(x)
        return self.oce(x)  # (B, 2*c3, H/32, W/32)
