"""Durable file operations: nothing half-written is ever seen under its final name."""

import errno
import os
import tempfile


def fsync_dir(path):
    """fsync a directory so that a rename or create inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_rename(fd, path, target):
    """fsync the open file ``fd`` (of ``path``), rename it to ``target``, fsync its dir.

    Data first, then the name: a crash never leaves an empty file under ``target``.
    """
    os.fsync(fd)
    os.rename(path, target)
    fsync_dir(os.path.dirname(target))


def makedirs(path, attempts=5):
    """mkdir -p that tolerates a racing creator, and a racing remover of an empty parent
    (a cleaner removing an empty suffix dir between our check and our mkdir)."""
    for attempt in range(attempts):
        try:
            os.makedirs(path, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
        except OSError as err:
            if err.errno != errno.EEXIST or not os.path.isdir(path):
                raise
            return


def atomic_write_bytes(path, data, tmp_dir=None, durable=True):
    """Write ``data`` to ``path`` via a temp file in the same (or given) dir, fsync, rename.

    ``durable=False`` skips the fsyncs: for caches that are rebuilt if a crash loses them,
    the rename alone still guarantees that readers never see a half-written file.
    """
    target_dir = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=tmp_dir or target_dir, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            if durable:
                os.fsync(fp.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(target_dir)
