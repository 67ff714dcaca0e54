import os
from pathlib import Path

import pytest

from gptclf.atomic import atomic_path, check_writable, write_text_atomic
from gptclf.errors import GptclfError


def test_written_file_appears_whole_with_normal_permissions(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "done")
    assert target.read_text() == "done"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_folders_made_for_a_file_that_fails_are_removed_again(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.txt"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    write_text_atomic(target, "done")
    assert target.read_text() == "done"


def test_a_folder_made_that_something_else_wrote_in_stays(tmp_path):
    target = tmp_path / "new" / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target):
        (tmp_path / "new" / "other.txt").write_text("theirs")
        raise RuntimeError
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["other.txt"]


def test_a_writable_path_passes_the_check_and_nothing_is_left(tmp_path):
    check_writable(tmp_path / "out.csv")
    check_writable(tmp_path / "missing" / "folders" / "out.csv")  # made when written
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_not_a_file_to_write(tmp_path):
    (tmp_path / "out.csv").mkdir()
    with pytest.raises(GptclfError, match=r"out\.csv: is a directory; give the path of a file"):
        check_writable(tmp_path / "out.csv")


def test_a_file_where_a_folder_should_be_is_named(tmp_path):
    (tmp_path / "data.csv").write_text("text\n")
    target = tmp_path / "data.csv" / "sub" / "out.csv"
    with pytest.raises(GptclfError, match=r"cannot be written, .*data\.csv is not a folder$"):
        check_writable(target)


READ_ONLY = [
    pytest.param(
        "chmod",
        marks=pytest.mark.skipif(
            not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere"
        ),
    ),
    pytest.param(
        "/proc", marks=pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="Linux /proc")
    ),
]


@pytest.mark.parametrize("folder", READ_ONLY)
def test_a_folder_that_takes_no_files_is_refused(tmp_path, folder):
    if folder == "chmod":
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
    target = Path(folder) / "missing" / "out.csv"
    with pytest.raises(GptclfError, match=rf"out\.csv: cannot write in {folder} \(.+\)$"):
        check_writable(target)
