"""The jsonl task: your own questions from JSON Lines files, GSM8K-shaped, with one-line data errors."""

import json

import pytest
from typer.testing import CliRunner

from loopkit.cli import build_app

GSM8K = [
    {"question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
     "answer": f"He has {a} + {b} = {a + b} apples.\n#### {a + b:,}"}
    for a, b in [(3, 4), (10, 25), (7, 7), (120, 980), (1, 1), (40, 2), (8, 13), (2, 2), (15, 15), (9, 90)]
]


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def recipe(write_recipe, tmp_path, **params):
    task = {"seed_file": str(tmp_path / "seeds.jsonl"), "checker": "numeric", "test_size": 0.3, **params}
    text = (f"name: gsm-like\nseed: 0\ntask: {{name: jsonl, params: {json.dumps(task)}}}\n"
            "student: {name: tiny, params: {hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}}\n"
            "teacher: {name: hf, params: {model: {name: tiny}}}\nloop: {rounds: 1, per_round: 3, max_new_tokens: 8}\n")
    return write_recipe(text)


def validate(path, *sets):
    return CliRunner().invoke(build_app(), ["validate", str(path), *[a for s in sets for a in ("--set", s)]])


def test_a_gsm8k_file_splits_and_reads_final_answers(write_recipe, tmp_path):
    from loopkit.tasks.jsonl import JsonlTask

    write_jsonl(tmp_path / "seeds.jsonl", GSM8K)
    task = JsonlTask(JsonlTask.Params(seed_file=str(tmp_path / "seeds.jsonl"), checker="numeric", test_size=0.3))
    data = task.load(0)
    assert len(data.pool) == 7 and len(data.test) == 3 and not data.warnings
    sample = next(s for s in data.pool + data.test if "120 apples" in s.question)
    assert sample.final == "1,100" and sample.answer.endswith("#### 1,100")
    assert task.readings(sample, "He has 1100 apples.\n#### 1100") == {"strict": True, "flexible": True}
    assert task.readings(sample, "So 1100 apples.") == {"strict": False, "flexible": True}


def test_plain_seed_answers_are_read_by_the_checker_and_an_unreadable_final_is_refused(tmp_path):
    from loopkit.errors import DataError
    from loopkit.tasks.jsonl import JsonlTask

    plain = [{"question": "What is 20 + 4?", "answer": "24"}, {"question": "What is 100 + 1?", "answer": 101},
             {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}]
    write_jsonl(tmp_path / "seeds.jsonl", plain)
    task = JsonlTask(JsonlTask.Params(seed_file=str(tmp_path / "seeds.jsonl"), checker="numeric", test_size=1))
    data = task.load(0)
    assert sorted(s.final for s in data.pool + data.test) == ["101", "24", "4"]
    write_jsonl(tmp_path / "seeds.jsonl", [*plain, {"question": "What is 12 + 16?", "answer": "#### 12 + 16 = 20"}])
    with pytest.raises(DataError, match="seeds.jsonl:4: field 'answer': the numeric checker reads no final answer from it "
                                        r"\(the numeric checker cannot read '12 \+ 16 = 20' as an answer\)"):
        task.load(0)


@pytest.mark.parametrize("lines, fragment", [
    ([], "no records (the file is empty)"),
    ([GSM8K[0], "{not json"], "seeds.jsonl:2: not valid JSON"),
    ([GSM8K[0], "[1, 2]"], "seeds.jsonl:2: a line must be a JSON object, not list"),
    ([GSM8K[0], {"q": "x", "answer": "#### 1"}], "seeds.jsonl:2: no field 'question' (its fields: answer, q); set task.params.question_field"),
    ([GSM8K[0], {"question": "  ", "answer": "#### 1"}], "seeds.jsonl:2: field 'question' is empty or not text"),
    ([GSM8K[0], GSM8K[1], GSM8K[0]], "seeds.jsonl:3: field 'question': duplicate question (first at line 1)"),
    ([GSM8K[0], {"question": "How many?", "answer": "Lots."}], "seeds.jsonl:2: field 'answer': the numeric checker reads no final answer"),
])
def test_data_problems_are_one_line_with_file_line_and_field(write_recipe, tmp_path, lines, fragment):
    write_jsonl(tmp_path / "seeds.jsonl", lines)
    result = validate(recipe(write_recipe, tmp_path))
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "\n" not in line and fragment in line and "Traceback" not in result.output, line


def test_a_missing_subtask_field_is_one_line(write_recipe, tmp_path):
    write_jsonl(tmp_path / "seeds.jsonl", [{**GSM8K[0], "src": "a"}, GSM8K[1]])
    result = validate(recipe(write_recipe, tmp_path), "task.params.subtask_field=src")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == ("Error: " + str(tmp_path / "seeds.jsonl") + ":2: no field 'src' "
                                     "(its fields: answer, question); set task.params.subtask_field")


def test_seed_test_overlap_warns_with_the_count_and_strict_refuses(write_recipe, tmp_path):
    write_jsonl(tmp_path / "seeds.jsonl", GSM8K)
    write_jsonl(tmp_path / "test.jsonl", GSM8K[:2] + [{"question": "What is 2 + 2?", "answer": "#### 4"}])
    path = recipe(write_recipe, tmp_path, test_file=str(tmp_path / "test.jsonl"))
    result = validate(path)
    output = " ".join(result.output.split())
    assert result.exit_code == 0 and "warning:" in output and "2 seed question(s) also in the test split" in output
    assert "8 seeds, 3 test" in output
    strict = CliRunner().invoke(build_app(), ["validate", str(path), "--strict"])
    assert strict.exit_code == 1 and "strict: true refuses overlap" in strict.output


def test_a_missing_file_is_one_line(write_recipe, tmp_path):
    result = validate(recipe(write_recipe, tmp_path))
    assert result.exit_code == 1 and "seeds.jsonl: file not found" in result.output


@pytest.mark.model
def test_end_to_end_with_an_api_teacher_and_strict_and_flexible_metrics(write_recipe, tmp_path, monkeypatch):
    pytest.importorskip("litellm")
    from loopkit.testing import run_recipe
    from loopkit.testing_server import ChatServer

    # each record's sub-task in a field of its own: accuracy per sub-task, and offspring of their seed's
    write_jsonl(tmp_path / "seeds.jsonl", [{**r, "src": "small" if i % 2 else "large"} for i, r in enumerate(GSM8K)])
    monkeypatch.setenv("LOOPKIT_TEST_JSONL_KEY", "sk-jsonl-test")
    with ChatServer() as server:
        result = run_recipe(
            tmp_path, "teacher.name=litellm",
            "teacher.params={model: openai/t, api_key_env: LOOPKIT_TEST_JSONL_KEY, api_base: '" + server.url + "'}",
            recipe=recipe(write_recipe, tmp_path, subtask_field="src"))
    run = result.run_dir.path
    synthetic = [json.loads(x) for x in (run / "round-001" / "synthetic.jsonl").read_text().splitlines()]
    assert len(synthetic) == 3 and all(s["final"] == "42" for s in synthetic)
    seeds = {s["id"]: s["subtask"] for s in map(json.loads, (run / "round-001" / "selected.jsonl").read_text().splitlines())}
    assert all(s["subtask"] == seeds[s["seed_id"]] in ("small", "large") for s in synthetic)
    metrics = json.loads((run / "round-001" / "metrics.json").read_text())
    graded = [json.loads(x) for x in (run / "round-001" / "eval.jsonl").read_text().splitlines()]
    for name, score in metrics["subtasks"].items():
        mine = [g["correct"] for g in graded if g["subtask"] == name]
        assert score["test_items"] == len(mine) > 0 and score["accuracy"] == sum(mine) / len(mine)
    assert sum(s["test_items"] for s in metrics["subtasks"].values()) == len(graded) == 3
    assert set(metrics["accuracy_by_reading"]) == {"strict", "flexible"}
    assert metrics["accuracy"] == metrics["accuracy_by_reading"]["strict"]
    rows = [json.loads(x) for x in (run / "round-001" / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(set(r["readings"]) == {"strict", "flexible"} for r in rows)


@pytest.mark.model
def test_hf_dataset_from_local_data_files_and_an_unreachable_hub(write_recipe, tmp_path):
    from loopkit.errors import UnavailableError
    from loopkit.tasks.hf_dataset import HFDatasetTask

    write_jsonl(tmp_path / "train.jsonl", GSM8K[:7])
    write_jsonl(tmp_path / "test.jsonl", GSM8K[7:])
    task = HFDatasetTask(HFDatasetTask.Params(
        path="json", data_files={"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")},
        checker="numeric"))
    data = task.load(0)
    assert len(data.pool) == 7 and len(data.test) == 3 and [s.final for s in data.test] == ["4", "30", "99"]
    assert data.pool[0].meta["line"] == "json[train]:0"

    missing_split = HFDatasetTask(HFDatasetTask.Params(path="json", data_files=str(tmp_path / "train.jsonl"), checker="numeric"))
    with pytest.raises(Exception, match="no split 'test' \\(its splits: train\\)"):
        missing_split.load(0)
    with pytest.raises(UnavailableError, match="it needs the hub"):  # conftest sets HF_HUB_OFFLINE=1
        HFDatasetTask(HFDatasetTask.Params(path="someone/not-cached-dataset")).load(0)


def test_the_gsm8k_recipe_validates_offline_and_says_what_it_could_not_check():
    from conftest import ROOT

    result = CliRunner().invoke(build_app(), ["validate", str(ROOT / "recipes" / "gsm8k.yaml")])
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "not checked here: task.params.path: dataset 'openai/gsm8k'" in output and "data not loaded here" in output


def test_relative_paths_are_read_from_the_recipe_folder_and_a_missing_one_names_its_field_and_full_path(
        write_recipe, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "seeds.jsonl", GSM8K)
    write_jsonl(tmp_path / "data" / "train.jsonl", GSM8K[:7])
    write_jsonl(tmp_path / "data" / "test.jsonl", GSM8K[7:])
    path = recipe(write_recipe, tmp_path, seed_file="data/seeds.jsonl")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the recipe's folder
    assert validate(path).exit_code == 0, validate(path).output
    local = validate(path, "task.name=hf-dataset", "task.params={path: json, checker: numeric, "
                           "data_files: {train: data/train.jsonl, test: data/test.jsonl}}")
    assert local.exit_code == 0 and "7 seeds, 3 test" in local.output, local.output
    missing = validate(path, "task.params.test_file=data/nope.jsonl")
    assert missing.exit_code == 1
    assert f"{tmp_path / 'data' / 'nope.jsonl'}: file not found (task.params.test_file;" in missing.output.replace("\n", "")
