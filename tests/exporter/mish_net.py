"""A net with nn.Mish: the ONNX op exists from opset 18 only (a TensorRT 8 target must refuse it)."""

import torch.nn as nn
class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.Mish()
        self.head = nn.Conv2d(4, num_classes, 1)
    def forward(self, x):
        return self.head(self.act(self.conv(x)))
def build(num_classes=3):
    return Net(num_classes)
