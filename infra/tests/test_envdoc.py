import pytest
from coinpulse_common.paths import repo_root
from coinpulse_platform import envdoc

pytestmark = pytest.mark.unit


def test_readme_lists_every_setting_and_is_current():
    readme = (repo_root() / "README.md").read_text()
    assert envdoc.render(readme) == readme, "README settings table is stale: run `uv run python -m " \
                                            "coinpulse_platform.envdoc --write`"
    for _where, cls in envdoc.settings_classes():
        for name in cls.model_fields:
            assert f"`COINPULSE_{name.upper()}`" in readme


def test_readme_has_exactly_two_setup_commands():
    readme = (repo_root() / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
