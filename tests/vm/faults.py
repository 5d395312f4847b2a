"""Scenarios that wreck their guest on purpose, loaded only by test_faults (a scenario file of the
kind users write, named in the configuration's `scenarios`)."""
import os
import signal

from harness.agent.protocol import Op
from harness.scenario import Guest, scenario


@scenario("fault-agent-crash", "the agent is killed", source="-", needs_nic=False)
def agent_crash(g: Guest):
    g.agent.call(Op.RUN, cmd=f"kill -9 {g.agent_pid}", timeout=30)


@scenario("fault-agent-hang", "the agent stops answering", source="-", needs_nic=False)
def agent_hang(g: Guest):
    g.agent.call(Op.RUN, cmd=f"kill -STOP {g.agent_pid}", timeout=3)  # stopped before it can reply


@scenario("fault-guest-spin", "the guest stops making progress: a SCHED_FIFO busy loop owns its only CPU for good",
          source="-", needs_nic=False)
def spin(g: Guest):
    g.agent.call(Op.RUN, cmd="echo -1 > /proc/sys/kernel/sched_rt_runtime_us; "
                             "chrt -f 99 sh -c 'while :; do :; done' & sleep 1", timeout=3)


@scenario("fault-panic", "the kernel panics", source="-", needs_nic=False)
def panic(g: Guest):
    g.agent.call(Op.RUN, cmd="echo c > /proc/sysrq-trigger", timeout=30)


@scenario("fault-qemu-killed", "QEMU is killed", source="-", needs_nic=False)
def qemu_killed(g: Guest):
    os.kill(g.vm.qemu.pid, signal.SIGKILL)
    g.agent.call(Op.RUN, cmd="sleep 5", timeout=30)
