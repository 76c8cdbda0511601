"""The doctor's WSL checks, on small file trees laid out as WSL would show them."""

from __future__ import annotations

from pathlib import Path

from cli.wsl import is_wsl, wsl_checks

WSL1 = "Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com)\n"
WSL2 = "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1c602f52c2e4) #1 SMP\n"


def tree(root: Path, version: str, driver: bool, linux_driver: bool = False) -> Path:
    """Lay out /proc and the driver folders of a WSL (or plain Linux) system under `root`."""
    (root / "proc").mkdir(parents=True)
    (root / "proc/version").write_text(version)
    (root / "proc/meminfo").write_text("MemTotal:       16318420 kB\n")
    (root / "dev/shm").mkdir(parents=True)
    if driver:
        (root / "usr/lib/wsl/lib").mkdir(parents=True)
        (root / "usr/lib/wsl/lib/libcuda.so.1").write_bytes(b"")
        (root / "usr/lib/wsl/lib/nvidia-smi").write_bytes(b"")
    if linux_driver:
        (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
        (root / "usr/lib/x86_64-linux-gnu/libcuda.so.1").write_bytes(b"")
    return root


def rows(project: Path, sysroot: Path) -> dict[str, tuple[str, str, str, str]]:
    """The checks by name."""
    return {row[0]: row for row in wsl_checks(project, sysroot)}


def test_plain_linux_adds_no_rows(tmp_path: Path) -> None:
    root = tree(tmp_path, "Linux version 6.8.0-45-generic (buildd@lcy02)\n", driver=False)
    assert not is_wsl(root)
    assert wsl_checks(tmp_path, root) == []


def test_wsl2_with_the_windows_driver_is_ok(tmp_path: Path) -> None:
    root = tree(tmp_path / "sys", WSL2, driver=True)
    got = rows(tmp_path, root)
    assert is_wsl(root)
    assert got["WSL"][1] == "ok"
    assert got["WSL GPU driver"][1] == "ok"
    assert got["WSL Linux driver"][1] == "ok"
    assert got["WSL memory"][1] == "ok"


def test_missing_windows_driver_says_where_to_install_it(tmp_path: Path) -> None:
    got = rows(tmp_path, tree(tmp_path / "sys", WSL2, driver=False))
    _name, level, _detail, fix = got["WSL GPU driver"]
    assert level == "fail" and "on Windows" in fix


def test_a_linux_driver_inside_wsl_is_flagged(tmp_path: Path) -> None:
    got = rows(tmp_path, tree(tmp_path / "sys", WSL2, driver=True, linux_driver=True))
    assert got["WSL Linux driver"][1] == "fail"
    assert "apt remove" in got["WSL Linux driver"][3]


def test_wsl1_has_no_gpu(tmp_path: Path) -> None:
    root = tree(tmp_path / "sys", WSL1, driver=False)
    (only,) = wsl_checks(tmp_path, root)
    assert only[1] == "fail" and "--set-version" in only[3]


def test_a_project_on_a_windows_drive_is_a_warning(tmp_path: Path) -> None:
    root = tree(tmp_path / "sys", WSL2, driver=True)
    got = rows(Path("/mnt/c/Users/me/jayavatar"), root)
    assert got["WSL project folder"][1] == "warn"
