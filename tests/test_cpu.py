"""CPU accounting (harness.cpu) and a run's cost in run.json, against real processes and threads."""
import os
import subprocess
import sys
import time

from harness.cpu import MeteredThread, process_seconds
from harness.results import Result
from harness.results.directory import cost

SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"


def test_an_exited_process_not_yet_reaped_still_tells_its_cpu_time():
    child = subprocess.Popen([sys.executable, "-c", SPIN])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert 0.25 <= process_seconds(child.pid) <= 2  # its spin, plus the interpreter's start
    child.wait()


def test_a_metered_thread_records_its_own_cpu_time_not_its_waiting():
    def spin_then_wait():
        t = time.thread_time()
        while time.thread_time() - t < 0.2:
            pass
        time.sleep(0.3)
    thread = MeteredThread(target=spin_then_wait)
    thread.start()
    thread.join()
    assert 0.2 <= thread.cpu_seconds < 0.45


def test_cost_sums_what_was_measured_and_lists_every_cell():
    measured = Result("s", "k", "igb", duration=2.0, qemu_cpu_seconds=1.5, harness_cpu_seconds=0.25)
    unmeasured = Result("s", "k", None, duration=0.5)  # skipped before a guest started
    c = cost([measured, unmeasured])
    assert (c["wall_seconds"], c["qemu_cpu_seconds"], c["harness_cpu_seconds"]) == (2.5, 1.5, 0.25)
    assert c["cells"]["s-k-nonic"]["qemu_cpu_seconds"] is None and set(c["cells"]) == {"s-k-igb", "s-k-nonic"}
