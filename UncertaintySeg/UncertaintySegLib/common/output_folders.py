"""Output folders written whole or not at all, never over a folder that appeared meanwhile, never over an input.

A run writes into a staging folder beside its output, `.<name>.<pid>@<host>.XXXXXXXX`, and publishes it
with one rename at the end:

- Without overwrite that rename never replaces anything: Linux `renameat2(RENAME_NOREPLACE)`; elsewhere, or
  where the file system refuses the flag, the name is claimed with an atomic `mkdir` and the staging folder
  renamed onto the empty claim (POSIX allows that, and it fails once anything is inside); Windows' rename
  never replaces. A folder that appeared while the run worked (another run to the same --out finished
  first) is left as it is, and this run fails with an InputError: of two runs exactly one succeeds.
- With overwrite the staging folder and the previous output are swapped in one step (Linux
  `renameat2(RENAME_EXCHANGE)`) and the previous one is removed, so the name always holds one whole
  output; concurrent overwrite runs leave the last one's. Elsewhere the previous output is first moved to
  `.<name>.old.<pid>@<host>.XXXXXXXX/<name>`, so for a moment the name is absent.
- Staging folders name their owner. Each new output folder first removes the staging folders, in the same
  parent, of processes that are gone (same host only; never a live process's), and puts back a previous
  output that a killed overwrite run had moved aside. A pid reused by a new process keeps its folder (safe).

`refuse_output_over_inputs` refuses an output that is, contains or lies inside a path the command reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import InputError, OutputWriteError

# `.<name>.[old.]<pid>@<host>.XXXXXXXX` (XXXXXXXX: tempfile's 8 characters)
STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<old>old\.)?(?P<pid>\d+)@(?P<host>[A-Za-z0-9_-]+)\.[a-z0-9_]{8}$")
_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_ATTEMPTS = 10  # overwrite: rounds against other runs replacing the same folder at the same moment


def require_new_output_folder(folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an existing output folder unless `overwrite`: call it before long work, not only at the end."""
    if os.path.lexists(folder) and not overwrite:
        raise InputError(f"output folder '{folder}' already exists; choose another folder or pass --overwrite.")


@contextlib.contextmanager
def atomic_output_folder(folder: str | os.PathLike, overwrite: bool = False):
    """Yield a staging folder that becomes `folder` only if the block succeeds.

    An existing `folder` is refused unless `overwrite`, and is replaced only at the end; a `folder` that
    appears meanwhile is never replaced without `overwrite` (InputError: "appeared while this run was working").
    """
    shown = folder
    folder = Path(os.path.abspath(folder))  # '.', '..': stage beside the folder, not inside it
    if folder == folder.parent:
        raise InputError(f"cannot use '{shown}' as the output folder: it is a file system root; choose a folder inside it.")
    require_new_output_folder(shown, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    reclaim_stale_staging(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{owner_tag()}.", dir=folder.parent))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700
    published = False
    try:
        try:
            yield staging
        except OutputWriteError as error:  # name the folder the user asked for, not the hidden staging one
            raise OutputWriteError(str(error).replace(str(staging), str(shown))) from None
        _publish(staging, folder, overwrite, shown)
        published = True
    finally:
        if os.path.lexists(staging):  # failed, or (after an exchange) the previous output
            _remove(staging, ignore_errors=published)


def refuse_output_over_inputs(out: str | os.PathLike, inputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """InputError if `out` is, contains or lies inside one of `inputs` ((argument, path) pairs that exist)."""
    target = Path(os.path.realpath(out))
    for argument, path in inputs:
        if not os.path.lexists(path):
            continue
        real = Path(os.path.realpath(path))
        if target == real or (os.path.exists(target) and os.path.samefile(target, real)):
            relation = "is"
        elif real.is_relative_to(target):
            relation = "contains"
        elif target.is_relative_to(real):
            relation = "lies inside"
        else:
            continue
        raise InputError(f"--out '{out}' {relation} {argument} '{path}', which this command reads: writing the output "
                         "there would change or delete that input, so nothing was written; choose an --out that is "
                         "not, does not contain and does not lie inside any input (e.g. a new folder beside them).")


def owner_tag(pid: int | None = None) -> str:
    """`<pid>@<host>`: who owns a staging folder."""
    return f"{os.getpid() if pid is None else pid}@{_host()}"


def reclaim_stale_staging(parent: str | os.PathLike) -> list[Path]:
    """Remove the staging folders in `parent` whose owner process (on this host) is gone; return them."""
    reclaimed = []
    try:
        entries = [entry for entry in os.scandir(parent) if entry.name.startswith(".")]
    except OSError:
        return reclaimed
    for entry in entries:
        match = STAGING_NAME.match(entry.name)
        if not match or match["host"] != _host() or not entry.is_dir(follow_symlinks=False):
            continue
        if _process_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        previous = path / match["name"]
        if match["old"] and os.path.lexists(previous):  # killed between an overwrite's two renames: put it back
            with contextlib.suppress(OSError):
                _rename_no_replace(previous, Path(parent) / match["name"])
        _remove(path, ignore_errors=True)
        if not os.path.lexists(path):
            reclaimed.append(path)
    return reclaimed


def _publish(staging: Path, folder: Path, overwrite: bool, shown) -> None:
    for _ in range(_ATTEMPTS):
        try:
            _rename_no_replace(staging, folder)
            return
        except FileExistsError:
            if not overwrite:
                raise InputError(
                    f"output folder '{shown}' appeared while this run was working (another run writing there?); it was "
                    "left as it is and this run's output was discarded. Choose another folder, or pass --overwrite "
                    "to replace it.") from None
        try:
            if _renameat2(staging, folder, _RENAME_EXCHANGE):
                return  # `staging` now holds the previous output: the caller removes it
        except FileNotFoundError:
            continue  # removed meanwhile: publish without replacing
        if _replace_through_retired(staging, folder):
            return
    raise InputError(f"output folder '{shown}' kept being replaced while this run replaced it (other runs writing "
                     "there?); this run's output was discarded. Run one at a time, or choose another folder.")


def _replace_through_retired(staging: Path, folder: Path) -> bool:
    """Without an atomic exchange: move the previous output aside, move ours in, remove the previous one."""
    retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.{owner_tag()}.", dir=folder.parent))
    try:
        try:
            os.rename(folder, retired / folder.name)
        except FileNotFoundError:
            return False
        try:
            _rename_no_replace(staging, folder)
        except BaseException as error:
            with contextlib.suppress(OSError):  # put the previous output back unless another run's is there now
                _rename_no_replace(retired / folder.name, folder)
            if isinstance(error, FileExistsError):
                return False
            raise
        return True
    finally:
        _remove(retired, ignore_errors=True)


def _rename_no_replace(source: Path, target: Path) -> None:
    """Rename `source` to `target`; FileExistsError (nothing moved) if `target` exists."""
    if _renameat2(source, target, _RENAME_NOREPLACE):
        return
    if os.name == "nt":
        os.rename(source, target)  # never replaces on Windows
        return
    if not source.is_dir() or source.is_symlink():
        os.link(source, target, follow_symlinks=False)  # FileExistsError if taken
        os.unlink(source)
        return
    os.mkdir(target)  # claim the name atomically: FileExistsError if taken
    try:
        os.rename(source, target)  # onto our empty claim; fails if another run put its output into it
    except OSError as error:
        with contextlib.suppress(OSError):
            os.rmdir(target)  # our claim, only while still empty
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        raise


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """Linux renameat2: True when done, False where unavailable (other systems, old kernels, file systems)."""
    function = _libc_renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(source), None, str(target))


@functools.lru_cache(maxsize=1)
def _libc_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.3
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


@functools.lru_cache(maxsize=1)
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "localhost"


def _process_alive(pid: int) -> bool:
    """Whether process `pid` on this host may still run; True when unsure (its folder is then kept)."""
    if pid == os.getpid() or pid <= 0:
        return True
    if os.name == "nt":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    try:  # a zombie has ended; only its exit status waits to be read
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
        return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return True


def _windows_process_alive(pid: int) -> bool:
    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = ctypes.c_void_p
        kernel32.GetExitCodeProcess.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong)]
        kernel32.CloseHandle.argtypes = [ctypes.c_void_p]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: no such process
        try:
            code = ctypes.c_ulong()
            return not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) or code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except Exception:  # noqa: BLE001 - unsure: keep the folder
        return True


def _remove(path: Path, ignore_errors: bool = False) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        try:
            os.unlink(path)
        except OSError:
            if not ignore_errors:
                raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
