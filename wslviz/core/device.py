"""Where a computation runs: ``device`` arguments (None is the CPU), checked once with one clear message."""

from __future__ import annotations

import torch

Device = torch.device | str | None


def resolve_device(device: Device) -> torch.device:
    """``device`` as a ``torch.device`` (None: the CPU); raises ``ValueError`` for a malformed name or a CUDA device
    that this machine does not have (torch would fail later, deep inside a kernel call)."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"not a device: {device!r} (use 'cpu', 'cuda' or 'cuda:N')") from e
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} asked, but this machine has no CUDA device (use 'cpu')")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} asked, but this machine has {count} CUDA device(s)")
    return dev


def on_cpu(device: Device) -> bool:
    """Whether ``device`` (None: the default) is the CPU."""
    return resolve_device(device).type == "cpu"
