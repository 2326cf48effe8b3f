"""``madgroup up --foreground``: prefixed logs like compose; Ctrl-C stops everything."""

from __future__ import annotations

import signal
import subprocess
import threading

from madgroup.local import processes

from tests.support.local_group import MADGROUP, Group
from tests.support.waiting import wait_for


def test_foreground_streams_prefixed_logs_and_ctrl_c_stops_the_group(group: Group) -> None:
    group.mg("init")
    proc = subprocess.Popen(
        [MADGROUP, "up", "--foreground", "--port-offset", str(group.offset), "sequential_thinking"],
        cwd=group.root,
        env=group.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    try:
        wait_for(
            lambda: any(
                line.startswith(
                    "sequential_thinking | INFO:sequential_thinking:MCP Server started on port"
                )
                for line in lines
            ),
            timeout=30,
            what="prefixed sequential_thinking log line",
        )
        wait_for(
            lambda: any(line.startswith("redis") and "|" in line for line in lines),
            timeout=10,
            what="prefixed redis log line",
        )
        pids = [group.pid("redis"), group.pid("sequential_thinking")]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
    assert any("Stopping the MAD group" in line for line in lines)
    for pid in pids:
        assert not processes.alive(pid, None)
