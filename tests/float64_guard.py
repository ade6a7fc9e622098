"""A dispatch mode that records every op producing a float64 tensor: Apple MPS has no float64."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class Float64Guard(TorchDispatchMode):
    """Use as `with Float64Guard() as guard:`; afterwards `guard.ops` lists the offending ops.

    `include_cpu=False` watches accelerator tensors only (the CPU side may use float64 freely).
    """

    def __init__(self, include_cpu: bool = True):
        super().__init__()
        self.include_cpu = include_cpu
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            watched = self.include_cpu or (isinstance(t, torch.Tensor) and t.device.type != "cpu")
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64 and watched:
                self.ops.append(str(func))
        return out
