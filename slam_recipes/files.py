"""Writing files whole: every file a reader may open while it is written (a run's records, evaluation results,
generations, unit shards, centroids, the cached --help) goes through `atomic_path` or `atomic_write`, so a reader
sees the old file or the whole new one, never a half-written one, and a failed write leaves nothing behind. And
`file_builder`: which `datasets` builder reads a data file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO

DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".gz": "json", ".parquet": "parquet", ".arrow": "arrow"}


def file_builder(path: str) -> str | None:
    """The `datasets` builder of a data file by its extension (`json`, `parquet`, `arrow`), or None."""
    return DATA_FILE_BUILDERS.get(os.path.splitext(path)[1].lower())


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside `path` (same folder, so the rename is atomic) for a writer that takes a path
    (`soundfile.write`, `pyarrow.parquet.write_table`, `safetensors.save_file`, ...). When the block ends, the file
    is renamed onto `path`; when it raises, the temporary file is removed and `path` is left as it was."""
    temporary = f"{path}.{os.getpid()}.tmp"  # per process: two writers never share a temporary file
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """`open(path, mode)` whose file appears at `path` only once it is complete (see `atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, mode, **open_kwargs) as f:
        yield f
