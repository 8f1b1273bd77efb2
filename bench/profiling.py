"""
Profile netdemos under load with py-spy and say where its time goes.

py-spy samples the running C{twistd} from outside, so netdemos runs exactly
as in the benchmark.  Samples are folded into self time (the function on top
of the stack) and inclusive time (anywhere on the stack), per function.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench import loads, servers
from bench.servers import Server

TOP = 12


def pySpy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def record(
    server: Server, seconds: float, drive: Callable[[Server], object]
) -> Counter[str] | str:
    """
    Sample C{server} while C{drive} loads it; return the folded stacks.
    """
    spy = pySpy()
    if spy is None:
        return "py-spy is not installed (pip install py-spy)"
    output = servers.logDirectory() / f"profile-{server.pid}.txt"
    argv = [spy, "record", "--pid", str(server.pid), "--duration"]
    argv += [str(int(seconds)), "--rate", "250", "--format", "raw"]
    argv += ["--output", str(output), "--nonblocking"]
    # py-spy runs on the generator's CPU; it wakes 250 times a second, cheaply.
    spying = threading.Thread(
        target=subprocess.run,
        args=(argv,),
        kwargs={"capture_output": True, "preexec_fn": servers.pinToGeneratorCPU},
    )
    spying.start()
    drive(server)
    spying.join()
    stacks: Counter[str] = Counter()
    for line in output.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stacks[stack] += int(count)
    return stacks


def shortFrame(frame: str) -> str:
    # "render (twisted/web/server.py:240)" -> "render (web/server.py:240)"
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    return f"{name} ({'/'.join(parts[-2:])})"


def summarise(title: str, stacks: Counter[str]) -> list[str]:
    total = sum(stacks.values())
    selfTime: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = [shortFrame(f) for f in stack.split(";") if f]
        if frames:
            selfTime[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"### {title} ({total} samples)", ""]
    lines += [
        "| self % | function | | inclusive % | function |",
        "|---|---|---|---|---|",
    ]
    # Frames on nearly every stack (the reactor loop, twistd's main) say
    # nothing; the inclusive column starts below them.
    below = [item for item in inclusive.most_common() if item[1] < 0.9 * total]
    for (f1, c1), (f2, c2) in zip(selfTime.most_common(TOP), below[:TOP], strict=False):
        share1, share2 = 100 * c1 / total, 100 * c2 / total
        lines.append(f"| {share1:.1f} | `{f1}` | | {share2:.1f} | `{f2}` |")
    return lines + [""]


def profileAll(seconds: float, source: Path | None) -> str:
    """
    Profile netdemos under the chat fan-out and HTTP loads.
    """
    runs: list[tuple[str, Callable[[Server], object], Callable[[], list[str]]]] = [
        (
            "chat fan-out",
            lambda s: loads.chatFanOut(s, seconds),
            servers.chatRateLifted,
        ),
        ("HTTP", lambda s: loads.httpLoad()(s, max(1, int(seconds))), list),
    ]
    out = ["## Where netdemos spends its time (py-spy)", ""]
    for title, drive, options in runs:
        server = servers.startNetdemos(source=source, options=options)
        try:
            server.secondsUntilListening()
            # Long enough to cover setup too; py-spy skips idle samples.
            result = record(server, seconds + loads.WARMUP + 3, drive)
        finally:
            server.stop()
        if isinstance(result, str):
            return result
        out += summarise(title, result)
    return "\n".join(out)
