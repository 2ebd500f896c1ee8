import pytest

from loopkit.errors import RecipeError
from loopkit.recipe import load_recipe


def test_tiny_recipe_validates_every_component(write_recipe):
    resolved = load_recipe(write_recipe())
    assert resolved.recipe.loop.rounds == 2
    assert resolved.params["trainer"].epochs == 1
    assert resolved.params["trainer"].bf16 == "auto"  # the component's own default is filled in
    assert resolved.classes["selector"].__name__ == "LossSelector"
    assert resolved.resolved_dict()["trainer"]["params"]["learning_rate"] == 0.003


def test_overrides_beat_the_file_and_parse_yaml_scalars(write_recipe):
    resolved = load_recipe(write_recipe(), ["loop.rounds=5", "selector.name=random", "trainer.params.bf16=false", "seed=7"])
    assert resolved.recipe.loop.rounds == 5
    assert resolved.recipe.selector.name == "random"
    assert resolved.params["trainer"].bf16 is False
    assert resolved.recipe.seed == 7


def test_include_merges_a_base_recipe_and_this_file_wins(write_recipe):
    write_recipe(name="base.yaml")
    child = write_recipe("include: base.yaml\nname: child\nloop: {rounds: 4}\n", name="child.yaml")
    resolved = load_recipe(child)
    assert resolved.recipe.name == "child"
    assert resolved.recipe.loop.rounds == 4
    assert resolved.recipe.loop.per_round == 6  # from the base


def test_include_cycle_is_refused(write_recipe):
    write_recipe("include: b.yaml\n", name="a.yaml")
    b = write_recipe("include: a.yaml\n", name="b.yaml")
    with pytest.raises(RecipeError, match="include cycle"):
        load_recipe(b)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("trainer.params.epochs=-1", "trainer.params.epochs: Input should be greater than 0"),
        ("selector.params.k=3", "selector.params.k: unknown field; remove it or check its spelling"),
        ("loop.per_round=0", "loop.per_round: Input should be greater than or equal to 1"),
        ("loop.mode=dynamic", "loop.mode: Input should be 'active', 'static' or 'static-matched'"),
        ("selector.name=los", "selector.name: unknown selector 'los'. Did you mean: 'loss'"),
        ("student.params.layers=many", "student.params.layers: Input should be a valid integer"),
        ("task.params.generators.sylogism={}", "task.params: unknown reasoning-gym generator 'sylogism'. Did you mean: syllogism"),
        ("task.params.generators.syllogism.config.bogus=1", "generator 'syllogism' rejects its config"),
        ("name=has space", "name: String should match pattern"),
        ("stray=1", "stray: unknown field"),
    ],
)
def test_mistakes_name_the_file_and_the_dotted_path(write_recipe, override, expected):
    path = write_recipe()
    with pytest.raises(RecipeError) as info:
        load_recipe(path, [override])
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_yaml_is_data_not_code(write_recipe):
    path = write_recipe("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "the recipe is empty"),
        ("- a\n- b\n", "a recipe must be a mapping"),
        ("name: x\ntask: [unclosed\n", "invalid YAML (line 3"),
        ("name: x\n", "task: required field is missing (and 2 more problems)"),
    ],
)
def test_malformed_files(write_recipe, text, expected):
    with pytest.raises(RecipeError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(write_recipe(text))


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_bad_override_syntax(write_recipe):
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe(write_recipe(), ["loop.rounds"])
