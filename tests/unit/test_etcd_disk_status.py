"""`cluster status` on the disk under etcd's data dir (pkctl/cluster/etcdstatus.py): DISK FULL once less than
one WAL file's worth is free there, nothing to say before."""
from __future__ import annotations

from pathlib import Path

from pkctl.cluster.etcdstatus import WAL_FILE_BYTES, disk_free, disk_lines
from pkctl.cluster.report import human_bytes


def test_disk_full_once_less_than_a_wal_file_is_free() -> None:
    data = Path("/h/etcd")
    assert disk_lines(data, WAL_FILE_BYTES, 2**30, human_bytes) == []
    full = disk_lines(data, 0, 256 * 2**20, human_bytes)
    assert full[0] == "DISK FULL: 0B free of 256.0MiB on the filesystem of etcd's data dir /h/etcd"
    assert "free space there" in full[1]
    assert disk_lines(data, WAL_FILE_BYTES - 1, 2**30, human_bytes)[0].startswith("DISK FULL: 61.0MiB free")


def test_no_data_dir_yet_says_nothing(tmp_path: Path) -> None:
    assert disk_free(tmp_path / "etcd") is None
    free, size = disk_free(tmp_path) or (0, 0)
    assert 0 <= free <= size and size > 0
