"""CI runs the README's test command verbatim, with the switch that makes the tests needing
the published checkpoint fail (not skip) when it is missing."""
from __future__ import annotations

import re

from conftest import REPO, REQUIRE_SHARED_ENV


def readme_test_command() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("Set up and run the tests"):]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1)


def test_ci_exports_require_shared_then_runs_the_readme_command_verbatim():
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    command = readme_test_command()
    assert "pytest" in command
    assert command in lines
    assert f"export {REQUIRE_SHARED_ENV}=1" in lines[:lines.index(command)]


def test_readme_names_the_variables_and_the_checkpoint_origin():
    readme = (REPO / "README.md").read_text()
    for text in ("DLR_ENGINE_SHARED", REQUIRE_SHARED_ENV, "model-523.index",
                 "arXiv:1712.05119"):
        assert text in readme
