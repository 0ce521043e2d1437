"""Writing files whole (slam_recipes.files): a reader sees the old file or the whole new one."""

import json
import os

import pytest

from slam_recipes.files import atomic_path, atomic_write


def test_a_complete_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run_summary.json"
    path.write_text("old")
    with atomic_write(str(path)) as f:
        json.dump({"steps": 3}, f)
        assert path.read_text() == "old"  # not visible before the block ends
    assert json.loads(path.read_text()) == {"steps": 3}
    assert os.listdir(tmp_path) == ["run_summary.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "results.md"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(str(path)) as f:
        f.write("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.md"]


def test_a_path_writer_and_a_new_file(tmp_path):
    """Writers that take a path (soundfile, parquet, safetensors) write the temporary path; nothing exists at the
    target until the block ends, then the whole file does."""
    path = tmp_path / "shard.bin"
    with atomic_path(str(path)) as temporary:
        assert os.path.dirname(temporary) == str(tmp_path) and temporary != str(path)
        with open(temporary, "wb") as f:
            f.write(b"\x00\x01")
        assert not path.exists()
    assert path.read_bytes() == b"\x00\x01" and os.listdir(tmp_path) == ["shard.bin"]
