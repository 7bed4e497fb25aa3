"""The README's examples of vmap, jacfwd, hessian and linearize run (each asserts its own result)."""
import pathlib
import re

import pytest

SECTION = "## Many directions: vmap, jacfwd, hessian, linearize"


def _examples() -> list[str]:
    text = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("index", range(3))
def test_readme_example_runs(index):
    examples = _examples()
    assert len(examples) == 3
    exec(compile(examples[index], f"README example {index}", "exec"), {})  # noqa: S102
