"""A model past protobuf's 2 GiB limit, for trying the study's external-data path.

`build_model` returns an MLP on the 8x8 digits with three 17,000-wide hidden layers: 579 M
weights, 2.32 GB in fp32, so `fp32.onnx` is written as the graph plus `fp32.onnx.data`, and
every later stage keeps that layout. `make test-large` runs the whole workflow on it
(tests/test_large_model.py).
Its weights are drawn with He initialisation (the workflow seeds torch first), so its outputs
are far from zero, as a trained network's would be; it is not trained.
"""

import math

import torch
from torch import nn

HIDDEN = 17_000


def build_model() -> nn.Module:
    """The MLP, [N, 1, 8, 8] -> [N, 10]."""
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, 10),
    )
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features))
                layer.bias.zero_()
    return model
