from loopkit.records import Sample, content_id, normalize_question, read_samples, write_jsonl


def test_jsonl_round_trip(tmp_path):
    samples = [
        Sample.create("What is 2+2?", "4", final="4", meta={"generator": "x", "nested": {"a": [1, 2]}}),
        Sample.create("Ünïcode — ok?", "Yes", final="Yes", source="reasoning-gym", seed_id="abc", round=2),
    ]
    write_jsonl(tmp_path / "s.jsonl", samples)
    assert read_samples(tmp_path / "s.jsonl") == samples


def test_id_is_a_stable_content_hash():
    a = Sample.create("What is 2+2?", "4")
    assert a.id == Sample.create("What is 2+2?", "4").id == content_id("seed", "What is 2+2?", "4")
    assert a.id != Sample.create("What is 2+3?", "4").id
    assert a.id != Sample.create("What is 2+2?", "4", source="teacher").id


def test_samples_are_immutable():
    import pytest
    from pydantic import ValidationError

    sample = Sample.create("q", "a")
    with pytest.raises(ValidationError):
        sample.question = "changed"


def test_normalized_questions_ignore_case_and_spacing():
    assert normalize_question("  What IS\n2 + 2? ") == normalize_question("what is 2 + 2?")


def test_a_round_row_keeps_its_scores_and_refuses_damaged_ones():
    import pytest

    from loopkit.records import RoundRow, Score

    row = RoundRow(round=1, samples=6, teacher_calls=6, accuracy=0.5, accuracy_se=0.144338, test_items=12,
                   subtasks={"aiw": Score(0.25, 0.176777, 6).to_json()})
    assert RoundRow.from_json(row.to_json()) == row and row.score == Score(0.5, 0.144338, 12)
    assert RoundRow.from_json({"round": 0, "samples": 0, "teacher_calls": 0, "accuracy": 0.0}).score is None  # older run
    for damage, problem in (({"subtasks": ["aiw"]}, "'subtasks'"), ({"subtasks": {"aiw": {"accuracy": "x"}}}, "'subtasks'"),
                            ({"accuracy_se": "0.1"}, "'accuracy_se'"), ({"test_items": 1.5}, "'test_items'")):
        with pytest.raises(ValueError, match=problem):
            RoundRow.from_json({**row.to_json(), **damage})
