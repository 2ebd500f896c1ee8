"""The run directory: every artifact written atomically (temp file + rename).

A round counts only once its ``COMPLETE`` marker exists, so a crash mid-round never leaves a
half-written round that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel

from loopkit.errors import LoopkitError
from loopkit.files import dir_target_problem, reason, shown, utf8_problem

COMPLETE = "COMPLETE"


def _dump(row: Any) -> str:
    return row.model_dump_json() if isinstance(row, BaseModel) else json.dumps(row, ensure_ascii=False, default=str)


class RunDir:
    def __init__(self, path: Path) -> None:
        # Absolute, so paths built from it (round_dir) stay valid when joined to it again.
        self.path = Path(path).absolute()

    @classmethod
    def create(cls, parent: str | Path, name: str) -> "RunDir":
        """A new ``<parent>/<name>-<YYYYmmdd-HHMMSS>`` directory (suffixed if that exists)."""
        parent = Path(parent)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cls.check_parent(parent)
        try:
            parent.mkdir(parents=True, exist_ok=True)
            for n in range(1000):
                path = parent / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
                try:
                    path.mkdir()
                    return cls(path)
                except FileExistsError:
                    continue
        except OSError as exc:
            raise LoopkitError(f"cannot create a run directory in {shown(parent)}: {reason(exc)} "
                               "(--output or output_dir)") from None
        raise LoopkitError(f"too many runs named {name} at {stamp} in {shown(parent)}")

    @staticmethod
    def check_parent(parent: str | Path) -> None:
        """Raise unless run directories can be made in ``parent`` (call before the slow work of a run)."""
        # utf8: the journal database and the libraries that save models need a text path.
        problem = utf8_problem(Path(parent).absolute()) or dir_target_problem(parent)
        if problem:
            raise LoopkitError(f"cannot create a run directory in {shown(parent)}: {problem} (--output or output_dir)")

    def round_dir(self, round: int) -> Path:
        path = self.path / f"round-{round:03d}"
        path.mkdir(exist_ok=True)
        return path

    def write_text(self, relative: str | Path, text: str) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_json(self, relative: str | Path, data: Any) -> Path:
        return self.write_text(relative, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def write_jsonl(self, relative: str | Path, rows: Iterable[Any]) -> Path:
        return self.write_text(relative, "".join(_dump(row) + "\n" for row in rows))

    def mark_complete(self, round: int) -> None:
        self.write_text(Path(f"round-{round:03d}") / COMPLETE, time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")

    def is_complete(self, round: int) -> bool:
        return (self.path / f"round-{round:03d}" / COMPLETE).exists()

    def complete_rounds(self) -> int:
        """The last round of the unbroken run of complete rounds from round 0 (-1: none)."""
        done = -1
        while self.is_complete(done + 1):
            done += 1
        return done

    def discard_rounds_after(self, round: int) -> None:
        """Remove the directories of rounds after ``round`` and stray temp files: what an interrupted run left half-done."""
        for path in self.path.glob("round-*"):
            suffix = path.name.removeprefix("round-")
            if suffix.isdigit() and int(suffix) > round:
                shutil.rmtree(path)
        for tmp in self.path.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
