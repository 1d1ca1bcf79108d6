"""Writing files so that nothing a user wrote is lost: a failed write leaves the earlier file as it was."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: Path, write) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    A failed or interrupted write leaves an earlier file at ``path`` as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """A temporary folder whose files move into ``folder`` once the block ends without an error.

    An error or Ctrl-C inside the block leaves nothing in ``folder`` (and does not create it): a
    command that writes many files (``sweep``'s fits, table and report) never leaves part of them.
    The temporary folder sits in ``folder`` or its nearest existing parent, so each final move is a
    rename on one file system; files of ``folder`` that the block did not write are kept.
    """
    import shutil
    import tempfile

    from bayescale.errors import BayescaleError

    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise BayescaleError(f"{str(target)!r} is a file; give a folder to write into")
    anchor = next(p for p in (target, *target.parents) if p.is_dir())
    staging = Path(tempfile.mkdtemp(prefix=".bayescale-staging-", dir=anchor))
    try:
        yield staging
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                final = target / path.relative_to(staging)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
