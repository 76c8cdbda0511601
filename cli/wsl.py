"""Windows Subsystem for Linux: what `jayavatar doctor` checks when it runs inside WSL.

On WSL 2 the NVIDIA driver is the Windows one; WSL maps its libraries (`libcuda`, `nvidia-smi`)
into /usr/lib/wsl/lib. A Linux driver installed inside WSL shadows them and breaks CUDA, files
under /mnt/<drive> cross a slow 9P bridge, and the VM's memory (and so /dev/shm) is capped by
the Windows side's .wslconfig.
"""

from __future__ import annotations

import os
from pathlib import Path

#: (check name, level ok|warn|fail, detail, fix)
Row = tuple[str, str, str, str]
MIN_SHM_BYTES = 2 * 2**30
MIN_MEMORY_BYTES = 8 * 2**30


def is_wsl(sysroot: Path = Path("/")) -> bool:
    """Tell whether this Linux runs under WSL (its kernel says "microsoft")."""
    try:
        return "microsoft" in (sysroot / "proc/version").read_text().lower()
    except OSError:
        return False


def wsl_checks(project: Path, sysroot: Path = Path("/")) -> list[Row]:
    """Return the WSL rows of the doctor's report; none outside WSL."""
    if not is_wsl(sysroot):
        return []
    version = (sysroot / "proc/version").read_text().lower()
    if "wsl2" not in version and "microsoft-standard" not in version:
        fix = "in PowerShell: wsl --set-version <distro> 2"
        return [("WSL", "fail", "WSL 1: it has no GPU access", fix)]
    return [
        ("WSL", "ok", "WSL 2", ""),
        _driver(sysroot),
        _shadowing_driver(sysroot),
        _location(project),
        _shm(sysroot),
        _memory(sysroot),
    ]


def _driver(sysroot: Path) -> Row:
    lib = sysroot / "usr/lib/wsl/lib"
    if (lib / "libcuda.so.1").exists() or (lib / "libcuda.so").exists():
        smi = "nvidia-smi there" if (lib / "nvidia-smi").exists() else "no nvidia-smi"
        return ("WSL GPU driver", "ok", f"Windows NVIDIA driver mapped in ({smi})", "")
    return (
        "WSL GPU driver",
        "fail",
        "no /usr/lib/wsl/lib/libcuda.so: WSL sees no NVIDIA driver",
        "install the current NVIDIA driver on Windows (not inside WSL), then: wsl --shutdown",
    )


def _shadowing_driver(sysroot: Path) -> Row:
    linux = sysroot / "usr/lib/x86_64-linux-gnu/libcuda.so.1"
    if linux.exists() and "/usr/lib/wsl/" not in str(linux.resolve()):
        return (
            "WSL Linux driver",
            "fail",
            f"{linux.relative_to(sysroot)} is a Linux driver; it shadows the Windows one",
            "remove it inside WSL: sudo apt remove --purge 'nvidia-driver-*' 'libnvidia-compute-*'",
        )
    return ("WSL Linux driver", "ok", "none installed inside WSL (as it should be)", "")


def _location(project: Path) -> Row:
    where = str(project.resolve())
    if where.startswith("/mnt/"):
        return (
            "WSL project folder",
            "warn",
            f"{where} is on a Windows drive (slow 9P file access)",
            "clone into the Linux file system, e.g. ~/jayavatar",
        )
    return ("WSL project folder", "ok", f"{where} (Linux file system)", "")


def _shm(sysroot: Path) -> Row:
    try:
        stat = os.statvfs(sysroot / "dev/shm")
    except OSError:
        return ("WSL /dev/shm", "warn", "no /dev/shm", "restart WSL: wsl --shutdown")
    size = stat.f_frsize * stat.f_blocks
    if size < MIN_SHM_BYTES:
        return (
            "WSL /dev/shm",
            "warn",
            f"{size / 2**30:.1f} GiB; long renders need 2 GiB or more",
            "raise memory= under [wsl2] in %UserProfile%\\.wslconfig, then: wsl --shutdown",
        )
    return ("WSL /dev/shm", "ok", f"{size / 2**30:.1f} GiB", "")


def _memory(sysroot: Path) -> Row:
    try:
        lines = (sysroot / "proc/meminfo").read_text().splitlines()
        total = next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemTotal"))
    except (OSError, StopIteration, ValueError, IndexError):
        return ("WSL memory", "warn", "cannot read /proc/meminfo", "")
    if total < MIN_MEMORY_BYTES:
        return (
            "WSL memory",
            "warn",
            f"{total / 2**30:.1f} GiB for the WSL VM; the engines want 8 GiB or more",
            "set memory=16GB under [wsl2] in %UserProfile%\\.wslconfig, then: wsl --shutdown",
        )
    return ("WSL memory", "ok", f"{total / 2**30:.1f} GiB", "")
