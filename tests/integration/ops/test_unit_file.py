"""The systemd unit: the settings the issue asks for, and systemd-analyze where it is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "systemd" / "gitopsd.service"

REQUIRED = {
    "Type": "notify-reload",
    "Restart": "on-failure",
    "StateDirectory": "gitopsd",
    "ConfigurationDirectory": "gitopsd",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "User": "gitopsd",
    "CacheDirectory": "gitopsd",
    "MemoryMax": "2G",
    "TasksMax": "512",
    "LimitNOFILE": "8192",
    "IPAddressDeny": "169.254.169.254 fd00:ec2::254",
}


def settings(text: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            result.setdefault(key, []).append(value)
    return result


def test_unit_has_the_required_settings() -> None:
    found = settings(UNIT.read_text())
    for key, value in REQUIRED.items():
        assert value in found.get(key, []), f"{key}={value} missing"
    assert re.fullmatch(r"\d+s|\d+min", found["WatchdogSec"][0])
    assert "ExecReload" not in found  # SIGHUP is the reload (Type=notify-reload)
    sysusers = (ROOT / "systemd" / "gitopsd.sysusers.conf").read_text()
    assert re.search(r"^u gitopsd ", sysusers, re.M)


def _systemd_version(analyze: str) -> int:
    out = subprocess.run([analyze, "--version"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"systemd (\d+)", out).group(1))  # type: ignore[union-attr]


@pytest.fixture
def analyzable(tmp_path: Path) -> tuple[str, Path]:
    """systemd-analyze and a copy of the unit that runs this checkout's gitopsd.

    The copy differs only in ExecStart (the binary must exist for ``verify``) and, on
    systemd < 253 (no notify-reload yet), in Type=notify.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text().replace("ExecStart=/usr/bin/gitopsd", f"ExecStart={Path(sys.executable).parent / 'gitopsd'}")
    if _systemd_version(analyze) < 253:
        text = text.replace("Type=notify-reload", "Type=notify")
    copy = tmp_path / "gitopsd.service"
    copy.write_text(text)
    return analyze, copy


def test_systemd_analyze_verify_is_clean(analyzable: tuple[str, Path]) -> None:
    analyze, unit = analyzable
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr


def test_systemd_analyze_security_exposure_at_most_1_4(analyzable: tuple[str, Path]) -> None:
    analyze, unit = analyzable
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 1.4
