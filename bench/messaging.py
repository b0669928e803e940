"""Message path: meshdcm against raw pyzmq (the ceiling) and RabbitMQ/pika (what the old system used).

All on loopback, one process per publisher and per subscriber.  For each transport, in one run:
- throughput: the publisher sends N realistic MR and CT header messages (meshdcm.synthetic, ~90 elements) as fast as it can; the subscriber
  evaluates a filter (meshdcm: its filter language on the raw bytes; the anchors: the same filter on a
  pydicom-free view, which is what they would need too) and counts; messages/s is measured at the subscriber.
- latency: the publisher sends at a fixed 2,000 msg/s; p50/p99 of (handled - published) times.

Goal (issue 2): >= 50,000 msg/s end to end, >= 10x RabbitMQ/pika, p99 <= 1 ms at 2,000 msg/s.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import emit, median, parser, percentile  # noqa: E402

# every header below passes it, after all three tests ran: the subscriber counts what it handled
FILTER = ('Modality in ["MR", "CT"] and SeriesDescription ~ "(?i)perf|dsc|head|t1|t2|diff" '
          'and not ImageType contains "LOCALIZER"')
TOPIC = "stored.instance"


def bodies() -> list[tuple[bytes, bytes]]:
    """(body, element index) of 8 MR and 8 CT headers, encoded once as a publishing node would."""
    from meshdcm import codec
    from meshdcm.dataview import element_index
    from meshdcm.synthetic import ct_header, mr_header

    series = ["t1", "t2", "flair", "dwi", "dsc"]
    encoded = [codec.encode(mr_header(seed=i, series=series[i % 5])) for i in range(10)]
    encoded += [codec.encode(ct_header(seed=i)) for i in range(6)]
    return [(b, element_index(b)) for b in encoded]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- roles (each runs in its own process) -------------------------------------------------------------------

def role_meshdcm_sub(args) -> None:
    import threading

    from meshdcm import Node

    n, out = args.count, args.out
    times: list[int] = []
    lat: list[int] = []
    done = threading.Event()
    node = Node("bench-sub", workers=1, **_discovery(args))

    @node.on(TOPIC, where=FILTER)
    def handle(msg):
        now = time.time_ns()
        times.append(now)
        lat.append(now - msg.timestamp_ns)
        if len(times) >= n:
            done.set()
    node.start()
    print("ready", flush=True)
    done.wait(args.timeout)
    Path(out).write_text(json.dumps({"count": len(times), "first": times[0] if times else 0,
                                     "last": times[-1] if times else 0, "lat": lat}))
    node.stop(timeout=1)


def role_meshdcm_pub(args) -> None:
    from meshdcm import Node

    data = bodies()
    node = Node("bench-pub", **_discovery(args))
    node.start()
    if not args.mesh:  # throughput and latency runs wait for their subscriber; the late-join run does not
        node.wait_for_peers(1, 10)
        node.wait_for_subscribers(TOPIC, 10)
    def send(i):
        body, index = data[i % len(data)]
        node.publish(TOPIC, body, index=index)
    _pace(args, send)
    _wait_for_subscriber(args)
    node.stop(timeout=5)


def _discovery(args) -> dict:
    """Static peers for the throughput runs; mDNS in a mesh of its own for the late-join run; CURVE keys when
    a keyring is given (bench/security.py): the publisher uses key "pub", the subscriber "sub"."""
    if args.mesh:
        return {"mesh": args.mesh}
    if args.keyring:
        me, peer = ("sub", "pub") if args.role.endswith("sub") else ("pub", "sub")
        return {"port": args.port, "discovery": False, "keyring": args.keyring, "key": me,
                "peers": (f"{peer}@tcp://127.0.0.1:{args.peer_port}",)}
    return {"port": args.port, "discovery": False, "peers": (f"tcp://127.0.0.1:{args.peer_port}",)}


def _wait_for_subscriber(args) -> None:
    """Stay open until the subscriber has written its result: libzmq drains a closed socket's backlog very slowly
    during linger, which would slow the tail of the run for reasons that have nothing to do with the transport."""
    deadline = time.monotonic() + args.timeout
    while not Path(args.out).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _pace(args, send) -> None:
    n, rate = args.count, args.rate
    if rate:
        interval = 1.0 / rate
        start = time.perf_counter()
        for i in range(n):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # sleeping lets the node's engine thread run; a busy wait would hold the GIL
            send(i)
    else:
        for i in range(n):
            send(i)


def role_zmq_sub(args) -> None:
    import zmq

    from meshdcm.filters import parse
    from meshdcm.message import Message

    flt = parse(FILTER)
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 0)
    s.subscribe(TOPIC.encode())
    s.connect(f"tcp://127.0.0.1:{args.peer_port}")
    print("ready", flush=True)
    times, lat = [], []
    s.RCVTIMEO = int(args.timeout * 1000)
    try:
        while len(times) < args.count:
            msg = Message.from_bytes(s.recv())
            if flt.evaluate(msg.view.get):
                now = time.time_ns()
                times.append(now)
                lat.append(now - msg.timestamp_ns)
    except zmq.Again:
        pass
    Path(args.out).write_text(json.dumps({"count": len(times), "first": times[0] if times else 0,
                                          "last": times[-1] if times else 0, "lat": lat}))


def role_zmq_pub(args) -> None:
    import zmq

    from meshdcm.message import Message

    data = [Message(TOPIC, body, index=index) for body, index in bodies()]
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.SNDHWM, 0)
    s.bind(f"tcp://127.0.0.1:{args.port}")
    time.sleep(1.0)  # raw PUB/SUB has no way to know the subscriber is there: the slow-joiner problem
    def send(i):  # the same frames meshdcm sends, stamped with the time, as a publisher would
        msg = data[i % len(data)]
        msg.timestamp_ns = time.time_ns()
        s.send(msg.to_bytes())
    _pace(args, send)
    _wait_for_subscriber(args)
    s.close(linger=5000)


def role_rabbit_sub(args) -> None:
    import pika

    from meshdcm.dataview import DataView
    from meshdcm.filters import parse

    flt = parse(FILTER)
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", args.peer_port))
    ch = conn.channel()
    ch.exchange_declare("meshdcm", exchange_type="topic")
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "meshdcm", routing_key="stored.#")
    ch.basic_qos(prefetch_count=1000)
    times, lat = [], []

    def on_message(chan, method, props, body):
        if flt.evaluate(DataView(body).get):
            now = time.time_ns()
            times.append(now)
            lat.append(now - int(props.timestamp))
        if len(times) >= args.count:
            chan.stop_consuming()
    ch.basic_consume(q, on_message, auto_ack=True)
    print("ready", flush=True)
    conn.call_later(args.timeout, ch.stop_consuming)
    ch.start_consuming()
    Path(args.out).write_text(json.dumps({"count": len(times), "first": times[0] if times else 0,
                                          "last": times[-1] if times else 0, "lat": lat}))
    conn.close()


def role_rabbit_pub(args) -> None:
    import pika

    data = bodies()
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", args.peer_port))
    ch = conn.channel()
    ch.exchange_declare("meshdcm", exchange_type="topic")

    def send(i):
        body, _index = data[i % len(data)]  # AMQP has one body: the subscriber walks it
        ch.basic_publish("meshdcm", TOPIC, body, pika.BasicProperties(timestamp=time.time_ns()))
    _pace(args, send)
    conn.close()


ROLES = {
    "meshdcm-sub": role_meshdcm_sub, "meshdcm-pub": role_meshdcm_pub,
    "zmq-sub": role_zmq_sub, "zmq-pub": role_zmq_pub,
    "rabbit-sub": role_rabbit_sub, "rabbit-pub": role_rabbit_pub,
}


# --- orchestration ------------------------------------------------------------------------------------------

def run_pair(transport: str, count: int, rate: int, broker_port: int | None = None,
             keyring: str | None = None) -> dict:
    tmp = tempfile.mkdtemp(prefix="meshdcm-bench-")
    out = os.path.join(tmp, "result.json")
    sub_port, pub_port = free_port(), free_port()
    me = [sys.executable, __file__]
    if transport == "meshdcm":
        sub_args = ["--port", str(sub_port), "--peer-port", str(pub_port)]
        pub_args = ["--port", str(pub_port), "--peer-port", str(sub_port)]
    elif transport == "zmq":
        sub_args = ["--peer-port", str(pub_port)]
        pub_args = ["--port", str(pub_port)]
    else:
        sub_args = pub_args = ["--peer-port", str(broker_port)]
    common = ["--count", str(count), "--rate", str(rate), "--out", out, "--timeout", "60"]
    if keyring:
        common += ["--keyring", keyring]
    env = dict(os.environ, XDG_DATA_HOME=tmp)  # each run's delivery state (journal, receipts) starts empty
    sub = subprocess.Popen(me + ["--role", f"{transport}-sub"] + sub_args + common, stdout=subprocess.PIPE, text=True,
                           env=env)
    assert sub.stdout is not None
    line = sub.stdout.readline()
    if "ready" not in line:
        raise RuntimeError(f"{transport} subscriber did not start")
    pub = subprocess.Popen(me + ["--role", f"{transport}-pub"] + pub_args + common, env=env)
    pub.wait(timeout=120)
    sub.wait(timeout=120)
    result = json.loads(Path(out).read_text())
    shutil.rmtree(tmp, ignore_errors=True)
    lat = sorted(result["lat"][len(result["lat"]) // 10:])  # skip the first 10% (connection warm-up)
    span = (result["last"] - result["first"]) / 1e9
    return {
        "received": result["count"],
        "msgs_per_s": round((result["count"] - 1) / span) if span > 0 else None,
        "p50_ms": round(percentile(lat, 50) / 1e6, 3) if lat else None,
        "p99_ms": round(percentile(lat, 99) / 1e6, 3) if lat else None,
    }


def _pids_with_env(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def late_join(runs: int) -> list[float]:
    """Seconds from starting a subscriber process to its first delivered message, found by mDNS, while a
    publisher is already sending 1,000 msg/s (issue 2: a late joiner gets everything published 1 s after its start)."""
    import uuid

    me = [sys.executable, __file__]
    delays = []
    for _ in range(runs):
        tmp = tempfile.mkdtemp(prefix="meshdcm-bench-")
        out = os.path.join(tmp, "result.json")
        mesh = ["--mesh", f"bench-{uuid.uuid4().hex[:8]}", "--out", out, "--timeout", "30"]
        pub = subprocess.Popen(me + ["--role", "meshdcm-pub", "--count", "30000", "--rate", "1000"] + mesh)
        time.sleep(1.0)  # the publisher is up and publishing to nobody
        started = time.time_ns()
        sub = subprocess.Popen(me + ["--role", "meshdcm-sub", "--count", "20"] + mesh, stdout=subprocess.DEVNULL)
        sub.wait(timeout=60)
        pub.kill()
        pub.wait()
        result = json.loads(Path(out).read_text())
        delays.append((result["first"] - started) / 1e9)
        shutil.rmtree(tmp, ignore_errors=True)
    return delays


class RabbitMQ:
    """A throw-away RabbitMQ server on 127.0.0.1 (Debian's rabbitmq-server), started and stopped here."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="meshdcm-rabbit-")
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.nodename = f"meshdcmbench{os.getpid()}@localhost"
        self.proc = None

    def __enter__(self):
        conf = Path(self.dir, "rabbitmq.conf")
        conf.write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
                        "log.console = false\nlog.file = false\n")
        env = dict(os.environ,
                   RABBITMQ_CONFIG_FILE=str(conf.with_suffix("")), RABBITMQ_MNESIA_BASE=self.dir,
                   RABBITMQ_LOG_BASE=self.dir, RABBITMQ_NODENAME=self.nodename,
                   RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(self.port),
                   RABBITMQ_DIST_PORT=str(self.dist_port), ERL_EPMD_ADDRESS="127.0.0.1",
                   ERL_EPMD_PORT=str(self.epmd_port), RABBITMQ_ENABLED_PLUGINS_FILE=str(Path(self.dir, "plugins")),
                   RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
                   HOME=self.dir)
        Path(self.dir, "plugins").write_text("[].\n")
        for path in [Path(self.dir), *Path(self.dir).iterdir()]:
            try:  # Debian's wrapper runs the server as the rabbitmq user
                shutil.chown(path, "rabbitmq", "rabbitmq")
            except (LookupError, PermissionError):
                pass
        self.proc = subprocess.Popen(["/usr/sbin/rabbitmq-server"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                import pika

                pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port)).close()
                return self
            except Exception:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("RabbitMQ did not start within 60 s")

    def __exit__(self, *exc):
        import signal

        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
        # the wrapper runs the server (and epmd) as another user, outside our process group and with the
        # settings in their environment: find every process whose environment names this server
        deadline = time.monotonic() + 15
        sig = signal.SIGTERM
        while time.monotonic() < deadline:
            left = _pids_with_env(f"RABBITMQ_NODENAME={self.nodename}")
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            time.sleep(0.2)
            if deadline - time.monotonic() < 5:
                sig = signal.SIGKILL
        shutil.rmtree(self.dir, ignore_errors=True)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--role", choices=sorted(ROLES))
    p.add_argument("--port", type=int)
    p.add_argument("--peer-port", type=int)
    p.add_argument("--count", type=int)
    p.add_argument("--rate", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--mesh", help=argparse_hidden())
    p.add_argument("--keyring", help=argparse_hidden())
    p.add_argument("--no-rabbit", action="store_true", help="skip RabbitMQ (e.g. where it is not installed)")
    args = p.parse_args()
    if args.role:
        ROLES[args.role](args)
        return
    n = 20_000 if args.quick else 100_000
    n_rate = 2_000 if args.quick else 10_000
    repeat = args.repeat or (2 if args.quick else 3)
    rabbit_n = 5_000 if args.quick else 20_000
    figures: dict = {"messages": n, "filter": FILTER, "repeat": repeat}
    from meshdcm import codec  # noqa: F401  (fail early if the package is not importable)

    sizes = [len(b) for b, _ in bodies()]
    figures["body_bytes_median"] = median(sizes)
    results: dict[str, list] = {"meshdcm": [], "zmq": [], "rabbitmq": []}
    latency: dict[str, dict] = {}
    for _ in range(repeat):
        results["meshdcm"].append(run_pair("meshdcm", n, 0))
        results["zmq"].append(run_pair("zmq", n, 0))
    latency["meshdcm"] = run_pair("meshdcm", n_rate, 2000)
    latency["zmq"] = run_pair("zmq", n_rate, 2000)
    use_rabbit = not args.no_rabbit and Path("/usr/sbin/rabbitmq-server").exists()
    if use_rabbit:
        with RabbitMQ() as rabbit:
            for _ in range(repeat):
                results["rabbitmq"].append(run_pair("rabbit", rabbit_n, 0, rabbit.port))
            latency["rabbitmq"] = run_pair("rabbit", n_rate, 2000, rabbit.port)
    for name, runs in results.items():
        if not runs:
            continue
        rate = median([r["msgs_per_s"] for r in runs])
        figures[f"{name}_msgs_per_s"] = rate
        figures[f"{name}_lost"] = max((n if name != "rabbitmq" else rabbit_n) - r["received"] for r in runs)
        figures[f"{name}_p50_ms_at_2000"] = latency[name]["p50_ms"]
        figures[f"{name}_p99_ms_at_2000"] = latency[name]["p99_ms"]
        print(f"{name:9s} {rate:10,.0f} msg/s   p50 {latency[name]['p50_ms']} ms  p99 {latency[name]['p99_ms']} ms "
              f"at 2,000 msg/s", flush=True)
    joins = late_join(3)
    figures["late_join_first_message_s"] = round(median(joins), 3)
    print(f"late joiner: first message {median(joins):.3f} s after its process started (median of {len(joins)}; "
          "includes Python start-up and imports)", flush=True)
    figures["meshdcm_vs_zmq"] = round(figures["meshdcm_msgs_per_s"] / figures["zmq_msgs_per_s"], 3)
    if use_rabbit:
        figures["meshdcm_vs_rabbitmq"] = round(figures["meshdcm_msgs_per_s"] / figures["rabbitmq_msgs_per_s"], 2)
    figures["goal_msgs_per_s"] = 50_000
    figures["goal_vs_rabbitmq"] = 10
    figures["goal_p99_ms"] = 1.0
    emit("messaging", figures)


if __name__ == "__main__":
    main()
