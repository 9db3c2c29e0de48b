"""CPU time and memory of a server's process group, read from /proc, and the CPU time of a finished child.

A server is started as the leader of its own process group, so summing over the group also counts any worker
or helper process it spawns. For a single process the sums are that process's own numbers.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class GroupSnapshot:
    cpu_seconds: float
    # The sum over the group of each process's peak resident set (VmHWM) and current resident set (VmRSS).
    peak_rss_bytes: int
    rss_bytes: int


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name, which may itself contain spaces and parentheses."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def group_member_pids(process_group: int) -> list[int]:
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # After the command name come the state, the parent pid and then the process group.
            if int(stat_fields(int(entry.name))[2]) == process_group:
                members.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return members


def cpu_seconds_of(pid: int) -> float:
    fields = stat_fields(pid)
    # utime and stime are fields 14 and 15 of the whole line, so 11 and 12 after the command name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def memory_bytes_of(pid: int, field: str) -> int:
    for line in (PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def snapshot_group(process_group: int) -> GroupSnapshot:
    cpu_seconds, peak_rss_bytes, rss_bytes = 0.0, 0, 0
    for pid in group_member_pids(process_group):
        try:
            cpu_seconds += cpu_seconds_of(pid)
            peak_rss_bytes += memory_bytes_of(pid, "VmHWM")
            rss_bytes += memory_bytes_of(pid, "VmRSS")
        except (OSError, ValueError, IndexError):
            continue
    return GroupSnapshot(cpu_seconds, peak_rss_bytes, rss_bytes)


def machine_busy_seconds() -> float:
    """CPU time all cores together have spent busy since boot: everything in /proc/stat but idle and iowait."""
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SECOND


@dataclass(frozen=True)
class FinishedChild:
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float
    wall_seconds: float


def run_child(command: list[str], *, timeout_seconds: float) -> FinishedChild:
    """Run a command to completion and report the CPU time it used, from the rusage of reaped children.

    The harness reaps no other child while this runs (servers are reaped only when stopped), so the difference
    in RUSAGE_CHILDREN is this command's own CPU time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
    wall_seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return FinishedChild(completed.returncode, completed.stdout, completed.stderr, cpu_seconds, wall_seconds)


def wait_until_idle(
    process_group: int, *, timeout_seconds: float, window_seconds: float = 0.3, idle_cpu_seconds: float = 0.02
) -> float:
    """Wait until the group uses almost no CPU over a short window; return the seconds waited.

    A load generator that stops leaves requests queued in the server (a blocking server may hold seconds of
    them), and they must not be counted against the next run. Returns early, after `timeout_seconds`, if the
    server never settles.
    """
    started = time.perf_counter()
    previous = snapshot_group(process_group).cpu_seconds
    while time.perf_counter() - started < timeout_seconds:
        time.sleep(window_seconds)
        current = snapshot_group(process_group).cpu_seconds
        if current - previous <= idle_cpu_seconds:
            break
        previous = current
    return time.perf_counter() - started
