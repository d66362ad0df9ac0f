"""The README's examples run as written (the new-rule example on a network jaxviz never saw)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(tag: str) -> str:
    text = README.read_text()
    m = re.search(rf"<!-- readme-test: {tag} -->\n```python\n(.*?)```", text, re.S)
    assert m, f"README has no block tagged {tag}"
    return m.group(1)


@pytest.mark.slow
def test_new_rule_example_runs_on_an_unseen_network(capsys):
    exec(compile(_block("new-rule"), "README.md:new-rule", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == [
        "saliency",
        "gradient_x_input",
        "integrated_gradients",
        "grad_cam",
        "fullgrad",
    ]
    assert all(float(ln.split()[-1]) == float(ln.split()[-1]) for ln in lines)  # finite AUCs, not NaN
