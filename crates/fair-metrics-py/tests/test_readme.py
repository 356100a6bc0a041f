"""The README's Python examples run as written (in one namespace, in order)."""

import pathlib
import re


def test_readme_examples_run():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    r = namespace["r"]
    assert r.features == ["race"] and 0.0 < r.es_auc["race"] <= r.overall["auc"]
