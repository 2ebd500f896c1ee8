"""The run directory: the one place that lays out, locks, writes and reads a run's files.

No other module builds a path inside a run or parses a run's file: they ask ``RunDir`` (the round
paths, the model a round saved, the complete rounds, the rows, selections and samples a resume
reads back, the summary).

Writes are atomic (temp file + rename). A round counts only once its ``COMPLETE`` marker exists,
so a crash mid-round never leaves a half-written round that looks finished; ``summary.json`` is a
view of the complete rounds (rebuilt on resume; ``report`` reads the rounds themselves).
Every command reads a run through ``RunDir``, so each gets the same checks: a damaged file, or a
hole in the rounds, ends in one line naming it and the ways out.

One process writes a run at a time: it holds an OS lock (``flock``) on the run's ``.lock`` file
from the moment it creates or resumes the run. The kernel releases it when the process ends,
however it ends (kill -9 included), so a lock is never stale. Readers (report, export) never take it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from loopkit.errors import LoopkitError, RunDirError, RunInUseError
from loopkit.files import dir_target_problem, file_mode, reason, respect_umask, shown, utf8_problem
from loopkit.journal import FILENAME as JOURNAL, Journal
from loopkit.records import RoundRow, Sample, prompt_variant

COMPLETE = "COMPLETE"
LOCK = ".lock"
RECIPE, MANIFEST, SUMMARY = "recipe.yaml", "manifest.json", "summary.json"
STATUS = "status.json"  # the stage the run started last, for watchers (compare); never read to resume
_ROUND = re.compile(r"round-(\d+)")

_held: dict[Path, int] = {}  # run directories this process holds: path -> the locked file's descriptor


def _dump(row: Any) -> str:
    return row.model_dump_json() if isinstance(row, BaseModel) else json.dumps(row, ensure_ascii=False, default=str)


class RunDir:
    def __init__(self, path: Path) -> None:
        # Absolute, so paths built from it (round_dir) stay valid when joined to it again.
        self.path = Path(path).absolute()

    @classmethod
    def create(cls, parent: str | Path, name: str) -> "RunDir":
        """A new ``<parent>/<name>-<YYYYmmdd-HHMMSS>`` directory (suffixed if that exists), locked by this process."""
        parent = Path(parent)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cls.check_parent(parent)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for n in range(1000):
                path = parent / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
                try:
                    path.mkdir()
                except FileExistsError:
                    continue
                run = cls(path)
                try:
                    run.lock()
                except BaseException:  # e.g. no space even for the lock file: leave no empty run behind
                    shutil.rmtree(path, ignore_errors=True)
                    raise
                return run
        except OSError as exc:
            raise LoopkitError(f"cannot create a run directory in {shown(parent)}: {reason(exc)} "
                               "(--output or output_dir)") from None
        raise LoopkitError(f"too many runs named {name} at {stamp} in {shown(parent)}")

    @classmethod
    def start(cls, parent: str | Path, name: str, recipe: str, manifest: dict) -> "RunDir":
        """A new run directory (see ``create``) with its header: ``recipe`` (the resolved recipe's YAML text) as
        recipe.yaml, and ``manifest`` plus the recipe's fingerprint as manifest.json. A failed write leaves no
        directory behind."""
        run = cls.create(parent, name)
        try:
            run.write_text(RECIPE, recipe)
            run.write_json(MANIFEST, {**manifest, "recipe_fingerprint": run.recipe_fingerprint()})
        except OSError as exc:  # nothing is in it yet: leave no directory behind
            run.unlock()
            shutil.rmtree(run.path, ignore_errors=True)
            raise run.write_error(exc, "run again") or exc
        return run

    def grow(self, recipe: str, changes: dict[str, list], command: dict | None = None) -> None:
        """Record a resume that extends the run (more rounds, a raised budget): ``recipe`` becomes recipe.yaml, and
        manifest.json gets its fingerprint and, under ``grown``, when and what changed ({field: [old, new]}), by
        which ``command``."""
        manifest = self.manifest()
        grown = [*manifest.get("grown", []),
                 {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "changes": changes, **(command or {})}]
        self.write_text(RECIPE, recipe)
        self.write_json(MANIFEST, {**manifest, "recipe_fingerprint": self.recipe_fingerprint(), "grown": grown})

    @staticmethod
    def check_parent(parent: str | Path) -> None:
        """Raise unless run directories can be made in ``parent`` (call before the slow work of a run)."""
        # utf8: the journal database and the libraries that save models need a text path.
        problem = utf8_problem(Path(parent).absolute()) or dir_target_problem(parent)
        if problem:
            raise LoopkitError(f"cannot create a run directory in {shown(parent)}: {problem} (--output or output_dir)")

    # -- the lock ---------------------------------------------------------------------------------

    def lock(self) -> bool:
        """Hold this run until ``unlock`` (``Loop.run`` unlocks as it ends) or the end of the process; False if
        this process holds it already.

        RunInUseError (naming the holder) if another process holds it; nothing is changed then.
        """
        key = self.path.resolve()
        if key in _held:
            return False
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self.write_error(exc, "try again") or exc
        try:
            if not _flock(fd, fcntl.LOCK_EX, tries=20):
                raise self._in_use(_holder(fd))
        except BaseException:
            os.close(fd)
            raise
        try:  # who holds it, for the message another process gets; best effort: a full disk must not stop a run here
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        except OSError:
            pass
        _held[key] = fd
        return True

    def unlock(self) -> None:
        fd = _held.pop(self.path.resolve(), None)
        if fd is not None:
            os.close(fd)  # the last descriptor of the lock's open file: the kernel releases the lock

    def held(self) -> bool:
        """Whether this process holds the run's lock."""
        return self.path.resolve() in _held

    def check_free(self) -> None:
        """RunInUseError (naming the holder) if another process holds this run; takes and changes nothing."""
        holder = self.holder()
        if holder is not None:
            raise self._in_use(holder)

    def _in_use(self, holder: str) -> RunInUseError:
        return RunInUseError(f"{self.path} is in use by {holder}; wait for it to end (or stop it), then try again")

    def holder(self) -> str | None:
        """Which other process holds this run (for readers such as ``compare``), or None. Holds nothing itself."""
        if self.held():
            return None
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY)
        except OSError:
            return None  # no lock file: no loopkit process has held this run since it was made
        try:
            if _flock(fd, fcntl.LOCK_SH, tries=1):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            return _holder(fd)
        finally:
            os.close(fd)

    # -- layout and writing -----------------------------------------------------------------------

    def round_path(self, round_no: int) -> Path:
        return self.path / f"round-{round_no:03d}"

    def round_dir(self, round_no: int) -> Path:
        """The round's directory, made if missing (for writing)."""
        path = self.round_path(round_no)
        path.mkdir(exist_ok=True)
        return path

    def train_dir(self, round_no: int) -> Path:
        """Where the round's trainer writes (its checkpoints; the student it saves goes to ``train/model``)."""
        return self.round_path(round_no) / "train"

    def has_round(self, round_no: int) -> bool:
        """Whether the round's directory exists (complete or not)."""
        return self.round_path(round_no).is_dir()

    def has_model(self, round_no: int) -> bool:
        return (self.train_dir(round_no) / "model").is_dir()

    def has_recipe(self) -> bool:
        return (self.path / RECIPE).is_file()

    def has_manifest(self) -> bool:
        return (self.path / MANIFEST).is_file()

    def has_summary(self) -> bool:
        return (self.path / SUMMARY).is_file()

    def write_text(self, relative: str | Path, text: str) -> Path:
        target = self.path / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as exc:
            raise _naming(exc, target) from exc
        try:
            os.fchmod(fd, file_mode())  # mkstemp makes it 0600: a teammate could not read a shared run
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _naming(exc, target) from exc
            raise
        return target

    def write_json(self, relative: str | Path, data: Any) -> Path:
        return self.write_text(relative, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def write_jsonl(self, relative: str | Path, rows: Iterable[Any]) -> Path:
        return self.write_text(relative, "".join(_dump(row) + "\n" for row in rows))

    def write_summary(self, name: str, mode: str, rows: list[RoundRow], stopped: str | None = None) -> None:
        """summary.json: the run's rows (a view of its complete rounds) and why it stopped early, if it did."""
        summary = {"name": name, "mode": mode, "rounds": [row.to_json() for row in rows]}
        if stopped:
            summary["stopped"] = stopped
        self.write_json(SUMMARY, summary)

    # A round's files, in the order the loop writes them (COMPLETE last).

    def write_status(self, round_no: int, stage: str, last: int) -> None:
        """status.json: this stage of this round (of rounds up to ``last``) runs now. Best effort: a run never
        fails for want of its status (the next stage writes it again)."""
        try:
            self.write_json(STATUS, {"round": round_no, "stage": stage, "last": last})
        except OSError:
            pass

    def write_selected(self, round_no: int, picks: Iterable[tuple[int, Sample]]) -> None:
        """selected.jsonl: per picked seed (its pool index, and the seed as the teacher got it), its index, id,
        question, sub-task (if the task has them) and the prompt variant the selector asked for, if any."""
        def row(index: int, seed: Sample) -> dict:
            variant = prompt_variant(seed)
            return {"index": index, "id": seed.id, "question": seed.question,
                    **({"subtask": seed.subtask} if seed.subtask is not None else {}),
                    **({"variant": variant} if variant is not None else {})}

        self.write_jsonl(self.round_path(round_no) / "selected.jsonl", (row(i, s) for i, s in picks))

    def write_pool_signals(self, round_no: int, rows: Iterable[dict]) -> None:
        self.write_jsonl(self.round_path(round_no) / "pool_signals.jsonl", rows)

    def write_synthetic(self, round_no: int, samples: list[Sample]) -> None:
        self.write_jsonl(self.round_path(round_no) / "synthetic.jsonl", samples)

    def write_dropped(self, round_no: int, rows: list[dict]) -> None:
        self.write_jsonl(self.dropped_path(round_no), rows)

    def dropped_path(self, round_no: int) -> Path:
        """dropped.jsonl: per dropped attempt, its seed, the reason and the new question (if there was one)."""
        return self.round_path(round_no) / "dropped.jsonl"

    def write_fidelity(self, round_no: int, rows: list[dict]) -> None:
        self.write_jsonl(self.round_path(round_no) / "fidelity.jsonl", rows)

    def write_eval(self, round_no: int, rows: list[dict]) -> None:
        self.write_jsonl(self.round_path(round_no) / "eval.jsonl", rows)

    def write_metrics(self, round_no: int, row: RoundRow, extra: dict) -> None:
        """metrics.json: the round's row, then what else the round measured (training, drops, ...)."""
        self.write_json(self.round_path(round_no) / "metrics.json", {**row.to_json(), **extra})

    def mark_complete(self, round_no: int) -> None:
        respect_umask(self.round_path(round_no))  # what libraries wrote there (a saved model) included
        # Empty: it needs no data block, so a disk that filled up once the round's files were written cannot fail it.
        self.write_text(self.round_path(round_no) / COMPLETE, "")

    def is_complete(self, round_no: int) -> bool:
        return (self.round_path(round_no) / COMPLETE).exists()

    def complete_rounds(self) -> int:
        """The last round of the unbroken run of complete rounds from round 0 (-1: none)."""
        done = -1
        while self.is_complete(done + 1):
            done += 1
        return done

    def last_round(self) -> int:
        """The last complete round (-1: none), refusing a hole: a round missing or incomplete before a complete one.

        Resuming such a run would redo the hole and delete the complete rounds after it; the user decides instead.
        """
        done = self.complete_rounds()
        later = [k for k in self._rounds() if k > done and self.is_complete(k)]
        if later:
            hole = self.round_path(done + 1)
            names = ", ".join(self.round_path(k).name for k in later)
            if hole.is_dir():
                what, restore = f"has no {COMPLETE} marker", f"restore {hole.name} (or its {COMPLETE} marker, if the round is whole)"
            else:
                what, restore = "is missing", f"restore {hole.name}"
            raise RunDirError(
                f"{hole} {what} but later rounds are complete ({names}); {restore}, or delete {names} and run "
                f"loopkit run --resume {self.path} to redo the rounds from round {done + 1} on"
            )
        return done

    def discard_rounds_after(self, round_no: int) -> None:
        """Remove what an interrupted run left half-done: stray temp files, and the rounds after ``round_no`` that
        are not complete and come after every complete round (a complete round is never removed).
        Only the process holding the run removes anything: another one may be making that round now."""
        if self.path.resolve() not in _held:
            return
        rounds = self._rounds()
        last = max([round_no, *(k for k in rounds if self.is_complete(k))])
        for k in rounds:
            if k > last:
                shutil.rmtree(self.round_path(k))
        for tmp in self.path.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def discard_incomplete(self) -> None:
        """``discard_rounds_after`` the last of the unbroken complete rounds: what a stop or a failure leaves to tidy."""
        self.discard_rounds_after(self.complete_rounds())

    def write_error(self, exc: BaseException, then: str, writing: Path | None = None) -> RunDirError | None:
        """A one-line RunDirError if ``exc`` is a write the system refused (disk full, file too large,
        read-only, no permission), saying what to fix and ``then`` what to run; None for any other error.
        ``writing``: where the failed write was, if the error does not say (a library's own writer)."""
        found = refused_write(exc)
        if found is None:
            return None
        code, reason, filename = found
        where = self.path / filename if filename else writing or self.path  # a relative name is the run's (the journal)
        if code in (errno.EACCES, errno.EPERM) and not where.absolute().is_relative_to(self.path):
            return None  # a file that is not the run's: not this kind of problem
        if code in (errno.ENOSPC, errno.EDQUOT):
            fix = "free space"
        elif code == errno.EFBIG:
            fix = "lift the file-size limit (ulimit -f) or free space"
        else:
            fix = f"make {self.path} writable"
        return RunDirError(f"cannot write {where}: {reason}; {fix}, then {then}")

    # -- reading: every command reads a run through these --------------------------------------------

    def read_text(self, relative: str | Path) -> str:
        path = self.path / relative
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self.damaged(path, "is missing") from None
        except UnicodeDecodeError:
            raise self.damaged(path, "is not UTF-8 text") from None
        except OSError as exc:
            raise self.damaged(path, f"cannot be read ({exc.strerror})") from None

    def read_json(self, relative: str | Path, fix: str | None = None) -> Any:
        text = self.read_text(relative)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.damaged(self.path / relative, f"is not valid JSON ({_json_problem(exc, text)})", fix) from None

    def read_jsonl(self, relative: str | Path) -> list[dict]:
        """The rows of a JSON-lines file: one JSON object per non-blank line."""
        rows = []
        for n, line in enumerate(self.read_text(relative).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise self.damaged(self.path / relative, f"line {n} is not valid JSON ({_json_problem(exc, line)})") from None
            if not isinstance(row, dict):
                raise self.damaged(self.path / relative, f"line {n} is not a JSON object")
            rows.append(row)
        return rows

    def recipe(self) -> dict:
        """The run's resolved recipe (recipe.yaml) as data, refused if it changed since the run started."""
        data = self._recipe_data()
        recorded = self.manifest().get("recipe_fingerprint")
        if recorded is not None and recorded != _fingerprint(data):
            raise RunDirError(
                f"{self.path / 'recipe.yaml'} was changed after the run started (it no longer matches the fingerprint in "
                f"manifest.json); restore the recipe the run was started with, or start a new run with the changed one "
                f"(loopkit run {self.path / 'recipe.yaml'})"
            )
        return data

    def recipe_text(self) -> str:
        """recipe.yaml as written (comments included), refused if it changed since the run started."""
        self.recipe()
        return self.read_text(RECIPE)

    def recipe_fingerprint(self) -> str:
        """The sha256 of recipe.yaml's data (comments and layout aside): what manifest.json records at the start."""
        return _fingerprint(self._recipe_data())

    def manifest(self) -> dict:
        """manifest.json ({} for a run without one)."""
        path = self.path / MANIFEST
        if not path.exists():
            return {}
        data = self.read_json(path, fix="restore it from a copy, or delete it (loopkit then knows no versions of the run "
                                        "and no longer checks that recipe.yaml is unchanged)")
        if not isinstance(data, dict):
            raise self.damaged(path, "is not a JSON object")
        return data

    def _recipe_data(self) -> dict:
        import yaml

        try:
            data = yaml.safe_load(self.read_text(RECIPE))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise self.damaged(self.path / RECIPE, f"is not valid YAML ({getattr(exc, 'problem', None) or 'unreadable'}"
                                                          f"{where}; truncated?)") from None
        if not isinstance(data, dict):
            raise self.damaged(self.path / RECIPE, "is not a recipe (a mapping of sections)")
        return data

    def summary(self) -> dict | None:
        """summary.json as it is, or None if missing or unreadable (it is derived: the rounds are the truth)."""
        try:
            data = json.loads((self.path / SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def status(self) -> dict | None:
        """The stage the run started last (``round``, ``stage``, ``last``), or None if it wrote none or it is unreadable.
        Whether the run still runs is the lock's to say (``holder``)."""
        try:
            data = json.loads((self.path / STATUS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        ok = isinstance(data, dict) and isinstance(data.get("stage"), str) and all(
            isinstance(data.get(k), int) for k in ("round", "last"))
        return data if ok else None

    def summary_rows(self) -> list[RoundRow]:
        """The rounds summary.json lists, checked (for a run copied without its round directories)."""
        path = self.path / SUMMARY
        summary = self.read_json(path)
        rows = summary.get("rounds") if isinstance(summary, dict) else None
        if not isinstance(rows, list):
            raise self.damaged(path, "has no list of rounds")
        return [self._row(path, row, f"round {n}: ") for n, row in enumerate(rows)]

    def metrics(self, round_no: int) -> dict:
        """round-NNN/metrics.json (the round's row and what else it measured), checked to hold a row."""
        path = self.round_path(round_no) / "metrics.json"
        data = self.read_json(path)
        row = self._row(path, data)
        if row.round != round_no:
            raise self.damaged(path, f"says it is round {row.round}")
        return data

    def _row(self, path: Path, data: Any, where: str = "") -> RoundRow:
        try:
            return RoundRow.from_json(data)
        except ValueError as exc:
            raise self.damaged(path, f"{where}{exc}") from None

    def rows(self) -> list[RoundRow]:
        """One row per complete round (from their metrics.json), refusing a hole in the rounds."""
        return [RoundRow.from_json(self.metrics(k)) for k in range(self.last_round() + 1)]

    def trained(self, round_no: int) -> bool:
        """Whether the round trained the student (a round whose samples were all dropped keeps the one before)."""
        train = self.metrics(round_no).get("train")
        return isinstance(train, dict) and not train.get("skipped") and bool(train.get("examples"))

    def test_split(self, round_no: int) -> list[dict]:
        """The test questions round ``round_no`` was scored on (its eval.jsonl: id, question, reference), checked."""
        path = self.round_path(round_no) / "eval.jsonl"
        rows = self.read_jsonl(path)
        if not rows:
            raise self.damaged(path, "holds no test questions")
        for n, row in enumerate(rows, 1):
            if not isinstance(row.get("question"), str) or not isinstance(row.get("id"), str) \
                    or not isinstance(row.get("reference"), (str, type(None))):
                raise self.damaged(path, f"row {n} lacks an id, a question or a reference")
        return rows

    def check_round(self, round_no: int) -> None:
        """Every JSON file of a complete round parses (what resume does not read itself included, e.g. eval.jsonl)."""
        for path in sorted(self.round_path(round_no).glob("*.json*")):
            self.read_jsonl(path) if path.suffix == ".jsonl" else self.read_json(path)

    def selected(self, round_no: int, pool: list[Sample] | None = None) -> list[dict]:
        """round-NNN/selected.jsonl: the seeds picked in that round, each with its pool ``index``; with ``pool``,
        checked to name seeds of that pool (else the task's data changed since the run began)."""
        path = self.round_path(round_no) / "selected.jsonl"
        rows = self.read_jsonl(path)
        for n, row in enumerate(rows, 1):
            index = row.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise self.damaged(path, f"row {n} has no valid 'index'")
            if pool is None:
                continue
            if index >= len(pool):
                problem = f"names seed {index}, but the task's pool has {len(pool)} seeds"
            elif "id" in row and pool[index].id != row["id"]:
                problem = f"names seed {index} as {row['id']}, but the task's seed {index} is now {pool[index].id}"
            else:
                continue
            raise RunDirError(f"{path}: row {n} {problem}: the task's data changed since the run started; restore the "
                              "data the run was started with, or start a new run")
        return rows

    def synthetic(self, last: int) -> list[Sample]:
        """Every synthetic sample of rounds 1..``last``, in order."""
        return [s for k in range(1, last + 1) for s in self.samples(k)]

    def samples(self, round_no: int, name: str = "synthetic.jsonl") -> list[Sample]:
        path = self.round_path(round_no) / name
        samples = []
        for n, line in enumerate(self.read_text(path).splitlines(), 1):
            if line.strip():
                try:
                    samples.append(Sample.from_json(line))
                except ValidationError as exc:
                    raise self.damaged(path, f"line {n} is not a sample ({_validation_problem(exc)})") from None
        return samples

    def fidelity(self, round_no: int) -> list[dict]:
        """round-NNN/fidelity.jsonl ([] if the round scored no offspring)."""
        path = self.round_path(round_no) / "fidelity.jsonl"
        if not path.exists():
            return []
        rows = self.read_jsonl(path)
        for n, row in enumerate(rows, 1):
            if not all(_is_number(row.get(k)) for k in ("seed_own_loss", "offspring_own_loss")):
                raise self.damaged(path, f"row {n} lacks seed_own_loss / offspring_own_loss numbers")
            if not isinstance(row.get("seed_id"), str):
                raise self.damaged(path, f"row {n} has no seed_id")
        return rows

    def check_journal(self) -> None:
        """The teacher journal, if the run has one, is an SQLite file that is not truncated (its header says how
        long it is). Read-only: the journal itself checks its pages when it is opened."""
        path = self.path / JOURNAL
        problem = _sqlite_problem(path) if path.exists() else None
        if problem:
            raise RunDirError(f"{path} {problem}; restore it, or move it away to resume without it "
                              "(the unfinished round's teacher calls are then paid again)")

    def journal_totals(self) -> dict[str, float] | None:
        """The teacher journal's totals (answered calls, tokens, USD), or None for a run without a journal."""
        path = self.path / JOURNAL
        if not path.exists():
            return None
        journal = Journal(path)
        try:
            return journal.totals()
        finally:
            journal.close()

    def model_dir(self, round_no: int) -> Path:
        """The student round ``round_no`` saved (train/model), checked whole: weights not truncated, JSON files parse."""
        path = self.train_dir(round_no) / "model"
        if not path.is_dir():
            raise self.damaged(path, "is missing")
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            raise self.damaged(path, "holds no weights (no *.safetensors file)")
        for file in weights:
            problem = _safetensors_problem(file)
            if problem:
                raise self.damaged(file, problem)
        for file in sorted(path.glob("*.json")):
            self.read_json(file)
        return path

    def damaged(self, path: Path, problem: str, fix: str | None = None) -> RunDirError:
        """The error for a file of this run that cannot be used: what is wrong with it, and the ways out."""
        if fix is not None:
            return RunDirError(f"{path} {problem}; {fix}")
        try:
            first = Path(path).absolute().relative_to(self.path).parts[0]
        except (ValueError, IndexError):
            first = ""
        match = _ROUND.fullmatch(first)
        if match and int(match.group(1)) >= 1:
            k = int(match.group(1))
            fix = (f"restore it, or delete {first} (and any later round) and run loopkit run --resume {self.path} "
                   f"to redo it from round {k - 1}")
        else:
            fix = "restore it from a copy, or start a new run"
        return RunDirError(f"{path} {problem}; {fix}")

    def _rounds(self) -> list[int]:
        """The numbers of every round directory, complete or not, in order."""
        found = (_ROUND.fullmatch(p.name) for p in self.path.iterdir() if p.is_dir()) if self.path.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m and m.group(0) == self.round_path(int(m.group(1))).name)


def _flock(fd: int, mode: int, tries: int) -> bool:
    """Take ``mode`` without blocking; False if another process holds the lock.

    A few tries over a second: a reader's probe (``holder``) holds a shared lock for an instant.
    A file system without locks (some network mounts) lets the run go on unguarded.
    """
    for attempt in range(tries):
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(0.05)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                return True
            raise
    return False


def _holder(fd: int) -> str:
    """The holder a lock file names: 'loopkit process PID on HOST (since TIME)'."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
        return f"loopkit process {int(info['pid'])} on {info['host']} (since {info['started']})"
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` naming the file it failed on (a failed write() names none)."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
_SQLITE = {"SQLITE_FULL": errno.ENOSPC, "SQLITE_READONLY": errno.EROFS, "SQLITE_IOERR_WRITE": errno.ENOSPC,
           "SQLITE_IOERR_FSYNC": errno.ENOSPC, "SQLITE_IOERR_TRUNCATE": errno.ENOSPC}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust-backed libraries (safetensors, tokenizers) report one


def refused_write(exc: BaseException) -> tuple[int, str, str | None] | None:
    """(errno, reason, file or None) if ``exc`` (or what caused it) is a write the system refused, else None.

    Libraries report these their own ways: OSError, sqlite3's SQLITE_FULL, Rust's "(os error 28)",
    or only the system's words (pyarrow).
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            return exc.errno, exc.strerror or os.strerror(exc.errno), exc.filename
        if isinstance(exc, sqlite3.Error):
            name = getattr(exc, "sqlite_errorname", "") or ""
            code = _SQLITE.get(name) or (errno.EROFS if name.startswith("SQLITE_READONLY") else None)
            if code is not None:
                return code, str(exc), JOURNAL  # loopkit's only SQLite file
        found = _OS_ERROR.search(str(exc))
        if found and int(found.group(1)) in _WRITE_ERRNOS:
            return int(found.group(1)), os.strerror(int(found.group(1))), None
        for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            if os.strerror(code) in str(exc):
                return code, os.strerror(code), None
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _json_problem(exc: json.JSONDecodeError, text: str) -> str:
    where = f"{exc.msg}: line {exc.lineno}, column {exc.colno}"
    return f"{where}; truncated?" if exc.pos >= len(text.rstrip()) else where


def _validation_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = ".".join(map(str, error.get("loc", ())))
    return f"{loc}: {error['msg']}" if loc else error["msg"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fingerprint(recipe: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(_keyed(recipe), sort_keys=True, default=str).encode()).hexdigest()


def _keyed(value: Any) -> Any:
    """``value`` with every mapping key a string, so any YAML data has one canonical JSON form."""
    if isinstance(value, dict):
        return {str(k): _keyed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keyed(v) for v in value]
    return value


def _sqlite_problem(path: Path) -> str | None:
    """Why a file is not a whole SQLite database (not one, truncated), or None (an empty file is an empty database)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size == 0:
        return None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return "is not an SQLite database"
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the header's page count holds only when written with the change counter
    if page < 512 or page & (page - 1) or size % page or (valid and pages and size < pages * page):
        return f"is truncated ({size} bytes)"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be loaded (truncated, damaged header), or None: its header names every
    tensor's byte range, so a whole file ends exactly where the last tensor does."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"is truncated ({size} bytes)"
            length = int.from_bytes(head, "little")
            if length > size - 8:
                return f"is truncated ({size} bytes; its header alone needs {length + 8})"
            header = json.loads(f.read(length))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "has a damaged header (not a safetensors file?)"
    if 8 + length + end != size:
        return f"is {'truncated' if 8 + length + end > size else 'damaged'} ({size} bytes; its tensors end at byte {8 + length + end})"
    return None

