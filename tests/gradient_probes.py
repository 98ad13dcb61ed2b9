"""Test helper: probes that show which activations the gradient reaches."""
from __future__ import annotations

import torch
from torch import nn


def attach_probes(modules: dict[str, nn.Module]) -> list[tuple[str, torch.Tensor]]:
    """Add a zero leaf tensor to every output of the given modules, in call order.

    After backward, a probe's .grad is the gradient reaching that activation; it stays None when
    the call ran under no_grad (adding the probe there records nothing, so no path exists).
    """
    probes: list[tuple[str, torch.Tensor]] = []

    def hook(name):
        def add_probe(module, args, out):
            probe = torch.zeros_like(out, requires_grad=True)
            probes.append((name, probe))
            return out + probe
        return add_probe

    for name, module in modules.items():
        module.register_forward_hook(hook(name))
    return probes
