"""The README's Python API example runs as written, and what it prints is true."""

from __future__ import annotations

import contextlib
import io
import os
import re

import torch
from conftest import ROOT


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API example", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's API example section has no python code block"
    return match.group(1)


def test_readme_api_example_runs(monkeypatch):
    monkeypatch.chdir(ROOT)  # the example uses the repository-relative sample zoo path
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_example(), "README.md", "exec"), namespace)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("Zoo('moons-mlp'")
    zoo, final, res = namespace["zoo"], namespace["final"], namespace["res"]
    # the batched evaluation reproduces the accuracies stored in the zoo's metadata
    stored = torch.tensor(zoo.metadata["test_acc"].to_numpy()[zoo.final_index()], dtype=torch.float32)
    torch.testing.assert_close(res["accuracy"], stored, atol=1e-5, rtol=0)
    # the symmetry moved the weights but not the function
    assert (namespace["moved"] - final[:1]).norm() > 1.0
    torch.testing.assert_close(namespace["after"]["loss"][0], res["loss"][0], atol=1e-5, rtol=1e-5)
    assert namespace["naive"] >= 0 and namespace["aligned"] >= 0
    assert os.path.samefile(zoo.path, ROOT / "sample_zoo" / "moons-mlp")
