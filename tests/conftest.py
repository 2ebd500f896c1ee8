import os
import sys
import textwrap
from importlib.metadata import distributions
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # test modules import litellm; never fetch at import

# The suite tests loopkit, not whatever else is installed: third-party plugins (an installed
# loopkit-selector-foo) are not loaded, here or in the processes the tests start. A test that puts
# a plugin on the path on purpose allows it by name (``plugin_env``).
os.environ["LOOPKIT_LOAD_PLUGINS"] = ""  # the core only (it always loads)
os.environ.pop("LOOPKIT_DISABLE_PLUGINS", None)
from loopkit import plugins  # noqa: E402

plugins.reset()  # in case anything built the plugin host before this file ran

from loopkit.testing import TINY_RECIPE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def plugin_env(site: Path, **env: str) -> dict[str, str]:
    """The environment for a ``loopkit`` process that sees the plugins installed in ``site`` (and no other)."""
    names = sorted({d.metadata["Name"] for d in distributions(path=[str(site)])})
    return {**os.environ, "PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "LOOPKIT_LOAD_PLUGINS": ",".join(names), **env}


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe (loopkit.testing's tiny one by default, or given text) and return its path."""

    def write(text: str = TINY_RECIPE, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


# -- the fast tier: `pytest -m "not model"` runs the modules below, which import no torch, in seconds --------
# Every other module is marked `model` (its tests load a model, train, or run loopkit in other processes);
# so is a test in these modules that does, with @pytest.mark.model.
FAST_MODULES = {
    "test_checkers", "test_cli", "test_dependencies", "test_docs", "test_journal", "test_jsonl_task", "test_llm_teacher",
    "test_plugins", "test_public_api", "test_recipe", "test_recipes_dir", "test_records", "test_registry",
    "test_scaffold", "test_selectors", "test_stopping",
}
_FAST = pytest.StashKey[bool]()  # whether this session runs fast tests only


def _leaves_out_model_tests(config) -> bool:
    """Whether ``-m`` deselects every test marked ``model`` (e.g. ``-m "not model"``)."""
    try:
        from _pytest.mark.expression import Expression  # what -m itself evaluates; if it moves, collect everything
    except ImportError:
        return False
    expression = config.option.markexpr
    if not expression:
        return False
    compiled = Expression.compile(expression)
    # A heavy test is marked `model` and maybe a tier (`vllm`, `slow`, ...): `-m vllm` must still collect it, so the
    # model tests are left out only if the expression refuses `model` whatever the other markers are.
    with_model = lambda others: compiled.evaluate(lambda name, **kwargs: name == "model" or others)  # noqa: E731
    return not (with_model(True) or with_model(False))


def pytest_ignore_collect(collection_path, config):
    """The fast tier does not even import the other modules (some import torch at the top)."""
    if collection_path.suffix == ".py" and collection_path.stem.startswith("test_") and \
            collection_path.stem not in FAST_MODULES and _leaves_out_model_tests(config):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        if module is None or module.__name__ not in FAST_MODULES:
            item.add_marker(pytest.mark.model)


def pytest_collection_finish(session):
    session.config.stash[_FAST] = not any(item.get_closest_marker("model") for item in session.items)


@pytest.fixture(autouse=True)
def _fast_tests_import_no_torch(request):
    """In a session of fast tests only, the first test after which torch is imported fails, naming it."""
    yield
    if request.config.stash.get(_FAST, False) and "torch" in sys.modules:
        request.config.stash[_FAST] = False  # say it once
        pytest.fail("torch was imported in the fast tier (by this test, or while collecting): "
                    "mark the test @pytest.mark.model, or keep the import lazy", pytrace=False)
