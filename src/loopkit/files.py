"""Reading the user's files and naming paths in messages, whatever the file system says.

Every file loopkit reads on a user's word (recipes, ``include:``s, data files) goes through
``read_text``: it must be a regular file (a FIFO, ``/dev/zero`` or a terminal would hang or read
until memory runs out), at most ``limit`` bytes, and UTF-8. Every way that fails is one
``LoopkitError`` naming the file and what to do.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from loopkit.errors import LoopkitError

MiB = 1 << 20

# What an OSError means for the user, by errno: the reason, and what to do.
_REASONS = {
    errno.ENOENT: "not found",
    errno.ENOTDIR: "a component of the path is a file, not a directory; fix the path",
    errno.EISDIR: "is a directory, not a file",
    errno.ENAMETOOLONG: "the name is too long for the file system; use a shorter path",
    errno.EACCES: "permission denied; check the file's permissions or choose another path",
    errno.EPERM: "operation not permitted; check the permissions or choose another path",
    errno.EROFS: "the file system is read-only; choose a writable path",
    errno.ELOOP: "too many levels of symbolic links; fix the link",
    errno.ENOSPC: "no space left on the device; free some space or choose another disk",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another disk",
    errno.EEXIST: "already exists",
    errno.ENXIO: "no such device or address (a FIFO or socket nobody serves?); give a regular file",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
}


def shown(path: str | os.PathLike) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (b'\\xff') and control characters appear escaped (``\\xff``)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        return str(path)  # an OSError's "filename" can be a file descriptor
    path = os.fspath(path)
    text = path.decode("utf-8", "backslashreplace") if isinstance(path, bytes) else printable(path)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of file names (lone surrogates in Python) written as ``\\xff``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte (e.g. "\\ud800" written in YAML)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def name_problem(path: str | os.PathLike) -> str | None:
    """Why no file can have the name ``path`` (a NUL character, a lone surrogate), or None."""
    try:
        name = os.fsencode(path)
    except UnicodeEncodeError:
        return "a file name cannot hold this character (a lone surrogate); fix the name"
    return "a path cannot contain a NUL character (\\0); fix the name" if b"\0" in name else None


def reason(exc: OSError) -> str:
    """What an OSError means, in words a user can act on."""
    return _REASONS.get(exc.errno, exc.strerror or type(exc).__name__)


def os_error_message(exc: OSError) -> str | None:
    """One line for an OSError about a path (``None`` for one that names no path or known cause)."""
    if exc.filename is None and exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return None
    where = shown(exc.filename) if exc.filename is not None else "a file"
    if exc.filename2 is not None:
        where += f" -> {shown(exc.filename2)}"
    return f"{where}: {reason(exc)}"


def read_text(path: str | os.PathLike, limit: int, error: type[LoopkitError] = LoopkitError,
              what: str = "file", noun: str = "it", missing: str = "file not found") -> str:
    """The UTF-8 text of the regular file ``path`` (at most ``limit`` bytes; a leading BOM is dropped).

    ``what`` names the file a user should give instead ("a {what}"), ``noun`` what to save as UTF-8.
    """
    name = shown(path)
    if name_problem(path):
        raise error(f"{name}: {name_problem(path)}")
    try:
        # O_NONBLOCK: opening a FIFO without a writer must not hang (it has no effect on regular files).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise error(f"{name}: is a directory; pass a {what}") from None
        raise error(f"{name}: {missing if exc.errno == errno.ENOENT else reason(exc)}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{name}: is a directory; pass a {what}")
        if not stat.S_ISREG(info.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                    else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a regular file")
            raise error(f"{name}: is {kind}, not a regular file; give a {what} saved on disk")
        if info.st_size > limit:
            raise error(f"{name}: {info.st_size / MiB:,.1f} MiB is larger than the {limit / MiB:g} MiB loopkit reads "
                        f"for a {what}; make it smaller")
        chunks, size = [], 0
        while size <= limit:  # bounded even where st_size lies (/proc files report 0)
            chunk = os.read(fd, min(limit + 1 - size, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise error(f"{name}: cannot be read ({reason(exc)})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{name}: larger than the {limit / MiB:g} MiB loopkit reads for a {what}; make it smaller")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not UTF-8 text; save {noun} as UTF-8 (first bad byte at offset {exc.start})") from None


def check_regular_file(path: str | os.PathLike, limit: int, error: type[LoopkitError] = LoopkitError,
                       what: str = "file") -> None:
    """Raise unless ``path`` is a regular file of at most ``limit`` bytes (for files a library reads)."""
    name = shown(path)
    if name_problem(path):
        raise error(f"{name}: {name_problem(path)}")
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"{name}: {reason(exc)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{name}: not a regular file; give a {what} saved on disk")
    if info.st_size > limit:
        raise error(f"{name}: {info.st_size / MiB:,.1f} MiB is larger than the {limit / MiB:g} MiB loopkit reads "
                    f"for a {what}; make it smaller")


def utf8_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot name files that need text names (e.g. a SQLite database), or None."""
    try:
        os.fsencode(path).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return "the name is not valid UTF-8; choose a UTF-8 name"
    return None


def dir_target_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` can neither be used nor made as a directory (its nearest existing ancestor must be
    a directory), or None. Checked before any work, so a bad output path fails first and leaves nothing."""
    if name_problem(path):
        return name_problem(path)
    probe = Path(path)
    while True:
        try:
            info = os.stat(probe)
        except FileNotFoundError:
            if probe == probe.parent:
                return None
            probe = probe.parent
            continue
        except OSError as exc:
            return reason(exc)
        if stat.S_ISDIR(info.st_mode):
            return None
        if probe == Path(path):
            return "it is a file, not a directory; choose a directory"
        return f"{shown(probe)} is a file, not a directory; fix the path"


def check_dir_target(path: str | os.PathLike, option: str) -> None:
    """Raise, naming ``option``, unless ``path`` is a directory or can be made one."""
    problem = dir_target_problem(path)
    if problem:
        raise LoopkitError(f"{option} {shown(path)}: {problem}")


def umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else set back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the umask (a temp file made private must be set to it)."""
    return 0o666 & ~umask()


def respect_umask(root: str | os.PathLike) -> None:
    """Give every file under ``root`` at least the read/write bits the umask allows: some libraries write private
    files (0600: a safetensors save, a temp file renamed into place), which a teammate could not read."""
    mode = file_mode()
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            current = os.lstat(path).st_mode
            if stat.S_ISREG(current) and (current & 0o666) != mode & 0o666:
                os.chmod(path, (current & ~0o666 & 0o7777) | mode)
