"""Pages of memory-mapped weights handed back after a pass (wslviz.core.memory): nothing read changes, nothing
written is lost, and memory that is not a file's is left alone."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file

from wslviz.core.memory import is_file_mapped, release
from wslviz.formats.native import mmap_safetensor


def test_release_keeps_what_was_read_and_what_was_written(tmp_path):
    values = torch.randn(64, 4096)
    save_file({"weights": values}, str(tmp_path / "w.safetensors"))
    mapped = mmap_safetensor(tmp_path / "w.safetensors")
    assert is_file_mapped(mapped) and not is_file_mapped(values.clone()) and not is_file_mapped(torch.zeros(0))
    mapped[3, 5] = 7.0  # copy-on-write: the file keeps its value, this mapping holds the new one
    release(mapped)
    release(mapped[10:20])
    expected = values.clone()
    expected[3, 5] = 7.0
    assert torch.equal(mapped, expected)
    assert torch.equal(mmap_safetensor(tmp_path / "w.safetensors"), values)
    in_memory = values.clone()
    release(in_memory)
    np.testing.assert_array_equal(in_memory.numpy(), values.numpy())
