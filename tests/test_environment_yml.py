"""environment.yml mirrors pyproject.toml's dependency ranges for conda users."""

import tomllib

import yaml

from cio_mavera.settings import PROJECT_ROOT


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])


def _environment_pip_requirements() -> set[str]:
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml should have exactly one pip: section"
    return {r for r in pip_sections[0] if not r.startswith("-e")}


def test_environment_yml_pins_the_same_ranges_as_pyproject():
    assert _environment_pip_requirements() == _pyproject_requirements()


def test_environment_yml_installs_the_package_itself():
    assert "-e ." in (PROJECT_ROOT / "environment.yml").read_text()


def test_environment_yml_asks_for_a_supported_python():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    assert "python>=3.11" in env["dependencies"]
