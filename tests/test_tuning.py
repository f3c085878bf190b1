"""The daemon's process settings (node/tuning.py)."""

from __future__ import annotations

import subprocess
import sys


def test_daemon_process_settings_apply_in_a_fresh_process():
    # In a process of its own: the settings are process-wide and this test process keeps its own.
    code = (
        "import sys, ctypes\n"
        "from amanah.node.tuning import tune_process, SWITCH_INTERVAL\n"
        "tune_process()\n"
        "assert sys.getswitchinterval() == SWITCH_INTERVAL, sys.getswitchinterval()\n"
        "buf = [bytes(1 << 20) for _ in range(64)]\n"  # MiB buffers still allocate and free
        "del buf\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_the_daemon_calls_it_before_starting_threads():
    import inspect

    from amanah.node import daemon

    src = inspect.getsource(daemon.Daemon.run)
    assert src.index("tune_process()") < src.index("threading.Thread(")
