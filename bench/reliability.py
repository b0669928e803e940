"""Reliability: what the journal costs, how fast a killed node receives again, how fast a dead peer is noticed.

All on loopback, one process per node (docs/delivery.md):
- throughput with the journal on (publisher journal + durable receipts) and off (no journal, receipts in memory),
  in the same run, alternating; the subscriber filters and counts like bench/messaging.py's. Goal: on >= 70% of off.
- resume: a subscriber receiving a steady 1,000 msg/s stream is SIGKILLed and restarted; time from the restart
  (process spawned) to its first handled message, and from its node's start() to it. Goal <= 2 s. Also checks that
  the restarted subscriber got every message published meanwhile (replay), none twice.
- dead peer: a node is SIGKILLed; time until its peer drops it (expired). Goal <= 3 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import emit, median, parser  # noqa: E402
from bench.messaging import FILTER, TOPIC, bodies, free_port  # noqa: E402


# --- roles (each runs in its own process) -------------------------------------------------------------------

def role_sub(args) -> None:
    from meshdcm import Node

    counts: dict[str, int] = {}
    times: list[int] = []
    done = threading.Event()
    node = Node(args.name, workers=1, port=args.port, discovery=False, mesh=args.mesh,
                peers=(f"tcp://127.0.0.1:{args.peer_port}",), durable=args.journal)

    @node.on(TOPIC, where=FILTER)
    def handle(msg):
        times.append(time.time_ns())
        key = msg.meta.get("n", len(times))
        counts[key] = counts.get(key, 0) + 1
        if args.count and len(times) >= args.count:
            done.set()
    node.start()
    started = time.time_ns()
    print("ready", flush=True)
    done.wait(args.timeout)
    node.stop(timeout=1)
    Path(args.out).write_text(json.dumps({"count": len(times), "first": times[0] if times else 0,
                                          "last": times[-1] if times else 0, "started": started,
                                          "seen": counts}))


def role_pub(args) -> None:
    from meshdcm import Node

    data = bodies()
    node = Node(args.name, port=args.port, discovery=False, mesh=args.mesh, journal=args.journal,
                durable=args.journal, peers=(f"tcp://127.0.0.1:{args.peer_port}",))
    node.start()
    node.wait_for_peers(1, 10)
    node.wait_for_subscribers(TOPIC, 10)
    if args.rate:  # a steady stream, numbered in meta, until the out file appears
        interval, i, start = 1.0 / args.rate, 0, time.perf_counter()
        while not Path(args.out).exists():
            body, index = data[i % len(data)]
            node.publish(TOPIC, body, index=index, meta={"n": str(i)})
            i += 1
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        Path(args.out + ".sent").write_text(str(i))
    else:
        for i in range(args.count):
            body, index = data[i % len(data)]
            node.publish(TOPIC, body, index=index)
        deadline = time.monotonic() + args.timeout
        while not Path(args.out).exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # stay until the subscriber wrote its result (libzmq drains slowly during linger)
    node.stop(timeout=5)


def role_idle(args) -> None:
    from meshdcm import Node

    node = Node(args.name, port=args.port, discovery=False, mesh=args.mesh,
                peers=(f"tcp://127.0.0.1:{args.peer_port}",)).start()
    print("ready", flush=True)
    node.run()


ROLES = {"sub": role_sub, "pub": role_pub, "idle": role_idle}


# --- runs ------------------------------------------------------------------------------------------------------

def _spawn(role: str, name: str, port: int, peer_port: int, mesh: str, out: str, env: dict, *extra: str):
    cmd = [sys.executable, __file__, "--role", role, "--name", name, "--port", str(port), "--peer-port",
           str(peer_port), "--mesh", mesh, "--out", out, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)


def _ready(proc) -> None:
    line = proc.stdout.readline()
    if "ready" not in line:
        raise RuntimeError("a bench node did not start")


def throughput(count: int, journal: bool) -> float:
    tmp = tempfile.mkdtemp(prefix="meshdcm-rel-")
    env = dict(os.environ, XDG_DATA_HOME=tmp)
    out, mesh = os.path.join(tmp, "result.json"), f"rel-{os.getpid()}-{time.time_ns()}"
    sub_port, pub_port = free_port(), free_port()
    flag = ["--journal"] if journal else []
    common = ["--count", str(count), "--timeout", "120", *flag]
    sub = _spawn("sub", "rel-sub", sub_port, pub_port, mesh, out, env, *common)
    _ready(sub)
    pub = _spawn("pub", "rel-pub", pub_port, sub_port, mesh, out, env, *common)
    pub.wait(timeout=180)
    sub.wait(timeout=180)
    result = json.loads(Path(out).read_text())
    span = (result["last"] - result["first"]) / 1e9
    return round((result["count"] - 1) / span) if span > 0 else 0.0


def resume() -> dict:
    """SIGKILL a subscriber of a steady stream, restart it; time to its first message and completeness."""
    tmp = tempfile.mkdtemp(prefix="meshdcm-rel-")
    env = dict(os.environ, XDG_DATA_HOME=tmp)
    mesh = f"rel-{os.getpid()}-{time.time_ns()}"
    sub_port, pub_port = free_port(), free_port()
    first_out, second_out = os.path.join(tmp, "first.json"), os.path.join(tmp, "second.json")
    sub = _spawn("sub", "rel-resume", sub_port, pub_port, mesh, first_out, env, "--journal", "--timeout", "600")
    _ready(sub)
    pub = _spawn("pub", "rel-pub", pub_port, sub_port, mesh, second_out, env, "--journal", "--rate", "1000")
    time.sleep(1.5)  # a steady stream for 1.5 s before the kill (a fixed part of the scenario, not a wait)
    os.killpg(sub.pid, signal.SIGKILL)
    sub.wait()
    spawned = time.time_ns()
    sub = _spawn("sub", "rel-resume", sub_port, pub_port, mesh, second_out, env, "--journal", "--timeout", "3")
    sub.wait(timeout=60)  # it runs 3 s after its start, then writes what it handled
    pub.wait(timeout=60)
    second = json.loads(Path(second_out).read_text())
    sent = int(Path(second_out + ".sent").read_text())
    return {"after_spawn_s": (second["first"] - spawned) / 1e9, "after_start_s": (second["first"] - second["started"]) / 1e9,
            "sent": sent, "twice_after_restart": sum(1 for c in second["seen"].values() if c > 1)}


def dead_peer() -> float:
    from meshdcm import Node

    tmp = tempfile.mkdtemp(prefix="meshdcm-rel-")
    env = dict(os.environ, XDG_DATA_HOME=tmp)
    mesh = f"rel-{os.getpid()}-{time.time_ns()}"
    port, victim_port = free_port(), free_port()
    with Node("rel-watch", port=port, discovery=False, mesh=mesh, durable=False) as watcher:
        victim = _spawn("idle", "rel-victim", victim_port, port, mesh, os.path.join(tmp, "x"), env)
        _ready(victim)
        if not watcher.wait_for_peers(1, 10):
            raise RuntimeError("the victim did not join")
        time.sleep(1.0)  # a settled mesh (heartbeats running) before the kill: part of the scenario
        t0 = time.monotonic()
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        if not watcher.wait_for(lambda ps: not ps, 30):
            raise RuntimeError("the dead peer was never dropped")
        return time.monotonic() - t0


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--role", choices=sorted(ROLES))
    p.add_argument("--name")
    p.add_argument("--port", type=int)
    p.add_argument("--peer-port", type=int)
    p.add_argument("--mesh")
    p.add_argument("--out")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--rate", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--journal", action="store_true")
    args = p.parse_args()
    if args.role:
        ROLES[args.role](args)
        return
    n = 20_000 if args.quick else 100_000
    repeat = 3 if args.quick else 5
    on, off = [], []
    for _ in range(repeat):
        off.append(throughput(n, journal=False))
        on.append(throughput(n, journal=True))
    figures: dict = {"messages": n, "repeat": repeat, "journal_off_msgs_per_s": median(off),
                     "journal_on_msgs_per_s": median(on)}
    figures["journal_on_vs_off"] = round(figures["journal_on_msgs_per_s"] / figures["journal_off_msgs_per_s"], 3)
    print(f"throughput: journal off {median(off):10,.0f} msg/s, on {median(on):10,.0f} msg/s "
          f"(on/off {figures['journal_on_vs_off']}; runs off {off}, on {on})", flush=True)
    resumes = [resume() for _ in range(2 if args.quick else 3)]
    figures["resume_after_spawn_s"] = round(median([r["after_spawn_s"] for r in resumes]), 3)
    figures["resume_after_start_s"] = round(median([r["after_start_s"] for r in resumes]), 3)
    figures["resume_twice_after_restart"] = max(r["twice_after_restart"] for r in resumes)
    print(f"resume: first message {figures['resume_after_spawn_s']} s after the restart was spawned "
          f"({figures['resume_after_start_s']} s after its node started); messages handled twice after the restart: "
          f"{figures['resume_twice_after_restart']}", flush=True)
    detect = [dead_peer() for _ in range(2 if args.quick else 3)]
    figures["dead_peer_detected_s"] = round(median(detect), 3)
    print(f"dead peer dropped {figures['dead_peer_detected_s']} s after its SIGKILL (runs {[round(d, 2) for d in detect]})",
          flush=True)
    figures["goal_journal_on_vs_off"] = 0.7
    figures["goal_resume_s"] = 2.0
    figures["goal_dead_peer_s"] = 3.0
    emit("reliability", figures)


if __name__ == "__main__":
    main()
