import pytest
from coinpulse_common.paths import repo_root
from coinpulse_common.settings import deprecated_env_vars, env_var
from coinpulse_platform import envdoc

pytestmark = pytest.mark.unit


def test_readme_lists_every_setting_and_is_current():
    readme = (repo_root() / "README.md").read_text()
    assert envdoc.render(readme) == readme, "README settings table is stale: run `uv run python -m " \
                                            "coinpulse_platform.envdoc --write`"
    for _where, cls in envdoc.settings_classes():
        for name in cls.model_fields:
            assert f"| `{env_var(cls, name)}` |" in readme


def test_the_table_lists_the_new_names_and_names_each_deprecated_one():
    table = envdoc.table()
    variables = [row.split("`")[1] for row in table.splitlines()[2:]]
    assert "COINPULSE_INGEST_MARKETS" in variables and "COINPULSE_DC_INTERVAL_S" in variables
    assert "COINPULSE_MARKETS" not in variables and "COINPULSE_DC_INTERVAL" not in variables
    assert len(variables) == len(set(variables))
    rows = {row.split("`")[1]: row for row in table.splitlines()[2:]}
    for _where, cls in envdoc.settings_classes():
        for name in cls.model_fields:
            for old in deprecated_env_vars(cls, name):
                assert f"formerly `{old}` (deprecated" in rows[env_var(cls, name)], old


def test_readme_has_exactly_two_setup_commands():
    readme = (repo_root() / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
