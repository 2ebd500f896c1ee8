import pytest

from loopkit.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError
from loopkit.hookspecs import hookimpl
from loopkit.plugins import PluginHost
from loopkit.registry import ComponentEntry, Registry


class Dummy:
    pass


def entry(name, dist="dist-a", kind="selector", target=Dummy):
    return ComponentEntry(kind, name, target, dist, "1.0")


def test_duplicate_name_names_both_distributions():
    registry = Registry()
    registry.add(entry("loss", "loopkit"))
    with pytest.raises(DuplicateComponentError, match="by loopkit and by loopkit-selector-evil"):
        registry.add(entry("loss", "loopkit-selector-evil"))


def test_same_name_in_different_kinds_is_fine():
    registry = Registry()
    registry.add(entry("reasoning-gym", kind="task"))
    registry.add(entry("reasoning-gym", kind="teacher"))
    assert registry.names("task") == registry.names("teacher") == ["reasoning-gym"]


def test_unknown_name_suggests_close_matches_and_lists_all():
    registry = Registry()
    for name in ("loss", "gold-loss", "random"):
        registry.add(entry(name))
    with pytest.raises(UnknownComponentError) as info:
        registry.get("selector", "los")
    message = str(info.value)
    assert "Did you mean: 'loss'" in message
    assert "Available: gold-loss, loss, random." in message


def test_names_must_be_kebab_case():
    with pytest.raises(PluginLoadError, match="kebab-case"):
        Registry().add(entry("Gold_Loss"))


def test_lazy_targets_import_on_load_and_fail_clearly():
    registry = Registry()
    registry.add(entry("ok", target="loopkit.selectors.loss:LossSelector"))
    registry.add(entry("gone", target="loopkit_no_such_module:Thing", dist="loopkit-selector-gone"))
    assert registry.load("selector", "ok").__name__ == "LossSelector"
    with pytest.raises(PluginLoadError, match="loopkit-selector-gone"):
        registry.load("selector", "gone")


class GoodPlugin:
    @hookimpl
    def register_selectors(self, register):
        register("fancy", Dummy)


class CrashingPlugin:
    @hookimpl
    def register_selectors(self, register):
        raise RuntimeError("boom")


def test_host_attributes_components_to_distributions_and_survives_a_crashing_hook():
    host = PluginHost()
    host.add(GoodPlugin(), "loopkit-selector-fancy", "2.0")
    host.add(CrashingPlugin(), "loopkit-selector-crash", "0.1")
    registry = host.build_registry()
    fancy = registry.get("selector", "fancy")
    assert (fancy.distribution, fancy.version) == ("loopkit-selector-fancy", "2.0")
    assert [f.distribution for f in registry.failures] == ["loopkit-selector-crash"]
    assert "RuntimeError: boom" in registry.failures[0].error


def test_host_registers_duplicates_loudly():
    host = PluginHost()
    host.add(GoodPlugin(), "dist-one")
    host.add(GoodPlugin(), "dist-two")
    with pytest.raises(DuplicateComponentError, match="dist-one and by dist-two"):
        host.build_registry()
