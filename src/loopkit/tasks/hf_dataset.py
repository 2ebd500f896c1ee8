"""Questions from a Hugging Face dataset: ``datasets.load_dataset`` on a hub id (where the hub is
reachable), a local directory, or data files — with the ``jsonl`` task's field mapping and checks.

GSM8K: ``{path: openai/gsm8k, name: main, seed_split: train, test_split: test, checker: numeric}``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from loopkit.component import LocalOrHub, in_recipe_folder
from loopkit.errors import DataError, UnavailableError
from loopkit.files import MiB, check_regular_file
from loopkit.records import Sample
from loopkit.tasks.jsonl import JsonlTask


class HFDatasetTask(JsonlTask):
    class Params(JsonlTask.Params):
        seed_file: None = Field(None, exclude=True)  # not used: the data come from `path`
        test_file: None = Field(None, exclude=True)
        path: LocalOrHub = Field(description="a hub dataset id (e.g. openai/gsm8k), a local directory, or a builder (json, csv)")
        name: str | None = Field(None, description="the dataset's configuration (e.g. main)")
        data_files: Annotated[str | list[str] | dict[str, Any] | None, AfterValidator(in_recipe_folder)] = Field(
            None, description="files for a builder such as json; relative to the recipe's folder")
        seed_split: str = Field("train", description="the split the seed pool comes from")
        test_split: str | None = Field("test", description="null: split test_size off the seed split")
        revision: str | None = Field(None, description="a hub revision (branch, tag or commit) of the dataset")

    @property
    def label(self) -> str:
        return f"dataset {self.params.path}"

    def splits(self) -> tuple[list[Sample], list[Sample] | None]:
        p = self.params
        dataset = self._load()
        return self._split(dataset, p.seed_split), self._split(dataset, p.test_split) if p.test_split else None

    def _load(self) -> Any:
        import datasets

        p = self.params
        datasets.disable_progress_bars()
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retry chatter would bury our one line
        try:
            for name in _local_files(p.data_files):  # datasets would read a FIFO or /dev/zero until memory runs out
                check_regular_file(name, MAX_FILE_BYTES, DataError, "data file")
        except DataError as exc:
            raise DataError(f"task.params.data_files: {exc}") from None
        try:
            return datasets.load_dataset(p.path, p.name, data_files=p.data_files, revision=p.revision)
        except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError, ...)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            local = Path(p.path).exists() or p.data_files is not None
            if not local:
                raise UnavailableError(
                    f"task.params.path: dataset '{p.path}' could not be loaded ({reason[:160]}); it needs the hub "
                    "(or a cached copy): run where the hub is reachable, or give a local path / data_files") from None
            raise DataError(f"task.params.path: dataset '{p.path}' could not be loaded: {reason[:200]}") from None

    def _split(self, dataset: Any, split: str) -> list[Sample]:
        if split not in dataset:
            raise DataError(f"{self.label}: no split '{split}' (its splits: {', '.join(dataset)}); set seed_split/test_split")
        rows = dataset[split]
        if len(rows) == 0:
            raise DataError(f"{self.label}: split '{split}' is empty")
        return self.to_samples([(f"{self.params.path}[{split}]:{i}", dict(r)) for i, r in enumerate(rows)],
                               f"hf:{self.params.path}")


MAX_FILE_BYTES = 16 * 1024 * MiB  # datasets copies a file into its cache: a larger one is a wrong file


def _local_files(data_files: Any) -> list[str]:
    """The files named in ``data_files`` (a name, a list, or split -> name(s)) that exist here (not
    directories, globs or URLs, which datasets expands itself)."""
    if data_files is None:
        return []
    if isinstance(data_files, dict):
        return [name for value in data_files.values() for name in _local_files(value)]
    names = [data_files] if isinstance(data_files, str) else data_files
    return [name for name in names if isinstance(name, str) and os.path.lexists(name) and not os.path.isdir(name)]
