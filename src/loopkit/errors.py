"""The errors loopkit raises for user mistakes.

Core code raises these; only the CLI turns them into a one-line ``Error: ...`` and exit code 1.
Any other exception is a bug and shows its traceback under ``--debug`` / ``LOOPKIT_DEBUG=1``.
"""


class LoopkitError(Exception):
    """A problem the user can fix; the message says how."""


class RecipeError(LoopkitError):
    """A recipe file that cannot be read, parsed or validated."""


class UnknownComponentError(LoopkitError):
    """A component name that no installed plugin registers."""


class DuplicateComponentError(LoopkitError):
    """Two plugins register the same component name."""


class PluginLoadError(LoopkitError):
    """A plugin that failed to import or to register its components."""


class DataError(LoopkitError):
    """A task whose data cannot be used (empty pool, no test items, bad files)."""


class UnavailableError(LoopkitError):
    """Something the recipe needs that this machine lacks right now (a network service, a key).

    ``loopkit validate`` reports it as a warning (the recipe itself is fine); ``run`` stops on it.
    """


class TeacherCheckError(LoopkitError):
    """The teacher's check call (``--check-teacher``) failed: a wrong api_base, model or key, or a server that is down."""


class NothingKeptError(LoopkitError):
    """Rounds in a row whose every sample was dropped: the teacher's output cannot be used as the recipe stands."""


class RunDirError(LoopkitError):
    """A run directory that cannot be used as it is: a damaged file, a hole in its rounds, a failed write."""


class RunInUseError(RunDirError):
    """Another process holds the run directory (its lock)."""
