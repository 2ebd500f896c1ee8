"""The README's default-run table, generated: python benchmarks/readme_numbers.py [RUN_DIR]

Without RUN_DIR it runs ``loopkit run recipes/logic.yaml`` (about 2 minutes on 2 CPU cores) into a
temporary directory; with one it reads that run. Either way it rewrites the README section between
the ``readme-numbers`` markers: the round rows (samples, teacher calls, accuracy, and accuracy per
sub-task, i.e. per reasoning-gym generator or level) and the run and training time. Nothing in
that section is typed by hand; tests/test_docs.py checks that it has the form ``render`` writes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECIPE = "recipes/logic.yaml"
BEGIN = "<!-- readme-numbers: begin (written by benchmarks/readme_numbers.py; do not edit by hand) -->"
END = "<!-- readme-numbers: end -->"


@dataclass
class Table:
    seconds: float  # run time, round 0 to the last round
    train_seconds: float
    subtasks: dict[str, int]  # sub-task -> test items, in column order
    rows: list[tuple[int, int, int, float, list[float]]]  # round, samples, calls, accuracy, per sub-task


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def _pct(value: float, best: bool = False) -> str:
    text = "100%" if value == 1 else f"{value:.1%}"
    return f"**{text}**" if best else text


def render(table: Table) -> str:
    """The README section for ``table`` (markers included)."""
    names = list(table.subtasks)
    lines = [BEGIN,
             f"Measured here (2 CPU cores, no GPU; `loopkit run {RECIPE}`, selector `loss`;",
             f"{_clock(table.seconds)} of run time from round 0 to the last round, of which training "
             f"{round(table.train_seconds)} s):", "",
             "| round | synthetic samples | teacher calls | test accuracy | "
             + " | ".join(f"{n} ({table.subtasks[n]} test items)" for n in names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    last = len(table.rows) - 1
    for i, (round_no, samples, calls, accuracy, per) in enumerate(table.rows):
        label = f"{round_no} (untrained)" if round_no == 0 else str(round_no)
        lines.append(f"| {label} | {samples} | {calls} | {_pct(accuracy, i == last)} | "
                     + " | ".join(_pct(a) for a in per) + " |")
    return "\n".join([*lines, END])


_ROW = re.compile(r"\| (\d+)(?: \(untrained\))? \| (\d+) \| (\d+) \| \**([\d.]+)%\** \|(.*)\|$")


def parse(section: str) -> Table:
    """The numbers of a README section that ``render`` wrote (ValueError if it has another form)."""
    lines = section.strip().splitlines()
    head = re.fullmatch(r"(\d+)m(\d\d)s of run time from round 0 to the last round, of which training (\d+) s\):"
                        r"|(\d+)s of run time from round 0 to the last round, of which training (\d+) s\):", lines[2])
    if lines[0] != BEGIN or lines[-1] != END or head is None:
        raise ValueError("the section's first lines or markers are not the script's")
    seconds = int(head[1]) * 60 + int(head[2]) if head[1] else int(head[4])
    subtasks = {m[1]: int(m[2]) for m in re.finditer(r"\| ([\w-]+) \((\d+) test items\)", lines[4])}
    rows = []
    for line in lines[6:-1]:
        match = _ROW.fullmatch(line)
        if match is None:
            raise ValueError(f"not a round row: {line}")
        per = [float(c.strip().strip("*").rstrip("%")) / 100 for c in match[5].split("|")]
        rows.append((int(match[1]), int(match[2]), int(match[3]), float(match[4]) / 100, per))
    return Table(seconds, int(head[3] or head[5]), subtasks, rows)


def section(text: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[start:end]


def from_run(run_path: Path) -> Table:
    """The table of a finished run of the logic recipe, read through loopkit's own readers."""
    from loopkit.recipe import load_recipe
    from loopkit.rundir import RECIPE as RUN_RECIPE, RunDir

    run = RunDir(run_path)
    rows = run.rows()
    resolved = load_recipe(run.path / RUN_RECIPE)
    test = resolved.build("task").load(resolved.recipe.seed).test
    subtask = {s.id: s.meta.get("level") or s.meta.get("generator") or "all" for s in test}
    names = list(dict.fromkeys(subtask[s.id] for s in test))
    counts = {n: sum(1 for v in subtask.values() if v == n) for n in names}
    out = []
    for row in rows:
        scored = run.test_split(row.round)
        per = []
        for name in names:
            mine = [r["correct"] for r in scored if subtask.get(r["id"]) == name]
            per.append(sum(mine) / len(mine) if mine else 0.0)
        out.append((row.round, row.samples, row.teacher_calls, row.accuracy, per))
    train = sum(r.seconds.get("train", 0.0) for r in rows)
    return Table(rows[-1].elapsed, train, counts, out)


def main(argv: list[str]) -> None:
    if argv:
        table = from_run(Path(argv[0]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "loopkit.cli", "run", str(ROOT / RECIPE), "-o", tmp], check=True)
            (run,) = Path(tmp).iterdir()
            table = from_run(run)
    text = README.read_text(encoding="utf-8")
    README.write_text(text.replace(section(text), render(table)), encoding="utf-8")
    print(render(table))


if __name__ == "__main__":
    main(sys.argv[1:])
