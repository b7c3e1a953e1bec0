"""The client: ``init`` → ``Run`` (log, sync, probe, checkpoint, finish).

Rank 0 alone talks to the host, on two connections to the run's socket: one for the
request/reply frames (hello, sync, finish), used on the caller's thread, and one for the
fire-and-forget frames (log, probe, checkpoint), written by a background thread from an
in-memory buffer. ``log()`` only appends to that buffer, so it never waits on the host;
when the buffer is full, points are dropped and counted, and the host records a
``dropped`` notice. ``sync()`` asks the host, then broadcasts its answer from rank 0
with torch.distributed when a process group is initialised, so every rank sees the same
phase at the same step.

If the host goes away the job goes on: the client warns once and records nothing more.
"""

import atexit
import collections
import json
import math
import os
import socket
import sys
import threading
import time

PROTOCOL = 1
ENV_RUN_DIR = "PHASETOP_RUN_DIR"
ENV_SOCKET = "PHASETOP_SOCKET"
# Points per log frame (the host accepts frames up to 1 MiB).
_FRAME_POINTS = 2000

_current = None


class Control:
    """The host's answer to a sync, the same on every rank."""

    __slots__ = ("step", "phase", "phase_changed", "settings", "set", "should_stop", "paused", "checkpoint", "errors", "dropped")

    def __init__(self, d):
        self.step = d.get("step", 0)
        self.phase = d.get("phase", "")
        self.phase_changed = bool(d.get("phase_changed", False))
        self.settings = d.get("settings") or {}
        self.set = d.get("set") or {}
        self.should_stop = bool(d.get("should_stop", False))
        self.paused = bool(d.get("paused", False))
        self.checkpoint = bool(d.get("checkpoint", False))
        self.errors = list(d.get("errors") or [])
        self.dropped = d.get("dropped", 0)

    def __repr__(self):
        return "Control(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


def _env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _warn(msg):
    print(f"phasetop: {msg}", file=sys.stderr, flush=True)


def _clean_metrics(m):
    """Metric values as JSON can carry them: floats, None for non-finite; a value that is
    not a number is sent as text for the host to refuse with a clear message."""
    out = {}
    for k, v in m.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            out[str(k)] = v if isinstance(v, str) else repr(v)
            continue
        out[str(k)] = f if math.isfinite(f) else None
    return out


def _dumps(frame, points_key=None):
    try:
        return json.dumps(frame, allow_nan=False, separators=(",", ":")).encode() + b"\n"
    except (TypeError, ValueError):
        # Slow path: a NaN, a tensor or another non-JSON value somewhere.
        if points_key == "points":
            frame = dict(frame, points=[dict(p, metrics=_clean_metrics(p["metrics"])) for p in frame["points"]])
        elif points_key == "metrics":
            frame = dict(frame, metrics=_clean_metrics(frame["metrics"]))
        return json.dumps(frame, allow_nan=False, separators=(",", ":"), default=repr).encode() + b"\n"


class Run:
    """A connection to a phasetop run. Make one with :func:`phasetop.init`."""

    def __init__(self, socket_path, run_dir, rank=0, world_size=1, config=None, all_ranks=False,
                 buffer_size=100_000, flush_interval=0.05, host_process=None):
        self.run_dir = run_dir
        self.rank = rank
        self.world_size = world_size
        self.phase = None
        self.settings = {}
        #: Every ``ctl set`` received, key → latest value.
        self.overrides = {}
        self._socket_path = socket_path
        self._talks = rank == 0 and socket_path is not None
        self._logs = socket_path is not None and (rank == 0 or all_ranks)
        self._all_ranks = all_ranks
        self._buf = collections.deque()
        self._cap = buffer_size
        self._dropped = 0
        self._step = 0
        self._dead = False
        self._finished = False
        self._warned = set()
        self._lock = threading.Lock()
        self._flush_interval = flush_interval
        self._host_process = host_process
        self._last = {"phase": None, "settings": {}}
        self._sock = self._rfile = self._lsock = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop_sender = False
        self._sender = None
        if socket_path is None:
            return
        try:
            if self._talks:
                self._sock = self._connect()
                self._rfile = self._sock.makefile("rb")
                welcome = self._request({"type": "hello", "protocol": PROTOCOL, "rank": rank, "world_size": world_size,
                                         "pid": os.getpid(), "config": _jsonable(config), "client": "python phasetop 0.1"})
                if welcome.get("type") == "error":
                    raise OSError(welcome.get("message"))
                self.phase = welcome.get("phase")
                self.settings = welcome.get("settings") or {}
                self._last = {"phase": self.phase, "settings": self.settings}
            if self._logs:
                self._lsock = self._connect()
                # The sender may wait on a slow host; training never does (it only queues).
                self._lsock.settimeout(None)
                if not self._talks:
                    self._lsock.sendall(_dumps({"type": "hello", "protocol": PROTOCOL, "rank": rank,
                                                "world_size": world_size, "pid": os.getpid()}))
                self._sender = threading.Thread(target=self._send_loop, name="phasetop-sender", daemon=True)
                self._sender.start()
        except OSError as e:
            self._lose(f"cannot reach the run's host at {socket_path} ({e})")

    # -- connection -------------------------------------------------------------------

    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self._socket_path)
        return s

    def _request(self, frame):
        with self._lock:
            self._sock.sendall(_dumps(frame))
            line = self._rfile.readline()
        if not line:
            raise OSError("the host closed the connection")
        return json.loads(line)

    def _lose(self, why):
        """The host is gone: training goes on, nothing more is recorded."""
        if not self._dead:
            self._dead = True
            self._logs = False
            self._buf.clear()
            _warn(f"{why}; training goes on, nothing more is recorded")

    def _warn_once(self, msg):
        if msg not in self._warned and len(self._warned) < 100:
            self._warned.add(msg)
            _warn(msg)

    # -- log --------------------------------------------------------------------------

    def log(self, metrics, step=None):
        """Queues metrics for ``step`` (the last step given when None). Never blocks:
        beyond the buffer's bound, points are dropped and counted. On ranks other than
        0 a no-op unless ``init(all_ranks=True)``."""
        if not self._logs:
            return
        if step is None:
            step = self._step
        else:
            self._step = step
        if len(self._buf) >= self._cap:
            self._dropped += len(metrics)
            return
        self._buf.append((step, dict(metrics)))
        if len(self._buf) >= _FRAME_POINTS:
            self._wake.set()

    def _frames(self, items):
        """Log frames for queued items (point tuples and ready frames), in order."""
        points = []
        rank = self.rank if (self._all_ranks and self.rank != 0) else None
        for it in items:
            if len(it) == 2:
                p = {"step": it[0], "metrics": it[1]}
                if rank is not None:
                    p["rank"] = rank
                points.append(p)
                if len(points) >= _FRAME_POINTS:
                    yield _dumps({"type": "log", "points": points, "dropped": self._take_dropped()}, "points")
                    points = []
            else:
                if points:
                    yield _dumps({"type": "log", "points": points, "dropped": self._take_dropped()}, "points")
                    points = []
                yield _dumps(it[2], "metrics")
        if points or self._dropped:
            yield _dumps({"type": "log", "points": points, "dropped": self._take_dropped()}, "points")

    def _take_dropped(self):
        d, self._dropped = self._dropped, 0
        return d

    def _send_loop(self):
        buf = self._buf
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            n = len(buf)
            if n or self._dropped:
                self._idle.clear()
                items = [buf.popleft() for _ in range(n)]
                try:
                    for frame in self._frames(items):
                        self._lsock.sendall(frame)
                    self._drain_replies()
                except OSError as e:
                    self._lose(f"lost the run's host ({e})")
                    self._idle.set()
                    return
            if not buf:
                self._idle.set()
            if self._stop_sender and not buf:
                return

    def _drain_replies(self):
        # Only a frame the host could not read is answered here; say so once.
        import select

        if not select.select([self._lsock], [], [], 0)[0]:
            return
        data = self._lsock.recv(65536)
        if not data:
            raise OSError("the host closed the connection")
        for line in data.splitlines():
            try:
                self._warn_once(json.loads(line).get("message", line.decode(errors="replace")))
            except ValueError:
                pass

    def flush(self, timeout=10.0):
        """Waits until every queued point has been sent (or ``timeout`` passes)."""
        if self._sender is None or self._dead:
            return
        deadline = time.monotonic() + timeout
        while (self._buf or not self._idle.is_set()) and time.monotonic() < deadline and self._sender.is_alive():
            self._wake.set()
            time.sleep(0.002)

    # -- sync -------------------------------------------------------------------------

    def _ask(self, step):
        if not self._talks or self._dead:
            return dict(self._last, step=step, phase_changed=False, set={}, should_stop=False, paused=False,
                        checkpoint=False, errors=[], dropped=0)
        try:
            reply = self._request({"type": "sync", "step": step})
        except (OSError, ValueError) as e:
            self._lose(f"lost the run's host ({e})")
            return self._ask(step)
        if reply.get("type") != "control":
            self._warn_once(f"unexpected answer to sync: {reply}")
            return self._ask_fallback(step)
        self._last = {"phase": reply.get("phase"), "settings": reply.get("settings") or {}}
        return reply

    def _ask_fallback(self, step):
        return dict(self._last, step=step, phase_changed=False, set={}, should_stop=False, paused=False,
                    checkpoint=False, errors=[], dropped=0)

    def sync(self, step=None):
        """Every rank calls it at the same step boundary. Rank 0 asks the host (waiting
        while the run is paused); the answer is broadcast to the other ranks when a
        torch.distributed process group is initialised. Returns a :class:`Control`."""
        if step is None:
            step = self._step
        else:
            self._step = step
        reply = None
        if self._is_root():
            reply = self._ask(step)
            while reply.get("paused") and not reply.get("should_stop"):
                time.sleep(0.1)
                reply = self._ask(step)
        dist = _dist()
        if dist is not None:
            reply = self._broadcast(dist, reply, step)
        elif reply is None:
            reply = self._ask_fallback(step)
        ctl = Control(reply)
        self.phase = ctl.phase
        self.settings = ctl.settings
        self.overrides.update(ctl.set)
        if self.rank == 0:
            for e in ctl.errors:
                self._warn_once(e)
        return ctl

    def _broadcast(self, dist, reply, step):
        """Rank 0's answer on every rank. Most answers change nothing; those cost one
        broadcast of a one-element tensor, and only an answer that changes something
        (a phase, `set`, a stop, a pause, a checkpoint) is pickled and broadcast whole
        with ``broadcast_object_list``."""
        import torch

        quiet = reply is not None and not (
            reply.get("phase_changed") or reply.get("set") or reply.get("should_stop")
            or reply.get("paused") or reply.get("checkpoint") or reply.get("phase") != self.phase)
        flag = torch.tensor([1 if quiet else 0], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.broadcast(flag, src=0)
        if int(flag.item()) == 1:
            if reply is None:
                reply = self._ask_fallback(step)
            return reply
        box = [reply]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _is_root(self):
        dist = _dist()
        return dist.get_rank() == 0 if dist is not None else self.rank == 0

    # -- probes, checkpoints, finish ---------------------------------------------------

    def probe(self, layer, features, step=None):
        """The feature-diversity probe metrics of ``features`` (n × d, or n × …; or
        attention probabilities with ``layer`` ending in ``.attn``), computed with torch
        as docs/SIGNALS.md defines them, logged for ``layer``. Returns the metrics."""
        from . import probes

        if step is None:
            step = self._step
        metrics = probes.layer_metrics(layer, features)
        if self._logs and len(self._buf) < self._cap:
            frame = {"type": "probe", "step": step, "layer": layer, "metrics": metrics}
            if self._all_ranks and self.rank != 0:
                frame["layer"] = f"rank{self.rank}/{layer}"
            self._buf.append((step, None, frame))
        return metrics

    def checkpoint(self, step, state, name=None):
        """``torch.save``s ``state`` (or what ``state()`` returns, so other ranks never
        build it) into RUN_DIR/checkpoints/ on rank 0, atomically, and records it.
        Returns the path on rank 0, None elsewhere."""
        if not self._is_root() or self.run_dir is None:
            return None
        import torch

        rel = os.path.join("checkpoints", name or f"step-{step}.pt")
        path = os.path.join(self.run_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        obj = state() if callable(state) else state
        tmp = path + ".tmp"
        torch.save(obj, tmp)
        os.replace(tmp, path)
        if self._logs:
            self._buf.append((step, None, {"type": "checkpoint", "step": step, "path": rel}))
        return path

    def finish(self, status="completed", message=""):
        """Sends what is queued and tells the host the job is done. Called at exit when
        the script does not."""
        global _current
        if self._finished:
            return
        self._finished = True
        self.flush()
        self._stop_sender = True
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=5)
        if self._talks and not self._dead:
            try:
                self._request({"type": "finish", "step": self._step, "status": status, "message": message})
            except (OSError, ValueError):
                pass
        for s in (self._sock, self._lsock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        if self._host_process is not None:
            # A host this client started ends on finish; wait for its log to be closed.
            try:
                self._host_process.wait(timeout=10)
            except Exception:
                pass
        if _current is self:
            _current = None


def _jsonable(v):
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return json.loads(json.dumps(v, default=repr))


def _dist():
    """torch.distributed when a process group of more than one rank is initialised."""
    if "torch" not in sys.modules:
        return None
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def _find_phasetop():
    import shutil

    return os.environ.get("PHASETOP_BIN") or shutil.which("phasetop")


def _start_host(run_dir, plan, name):
    """Standalone use (no ``phasetop run``): starts ``phasetop run --for-pid`` as this
    job's host, in its own session, and waits for its socket."""
    import subprocess

    exe = _find_phasetop()
    if exe is None:
        _warn("no `phasetop` binary found (set PHASETOP_BIN or put it on PATH); this run is not recorded")
        return None, None
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        run_dir = os.path.join("runs", f"{name}-{stamp}")
    os.makedirs(run_dir, exist_ok=True)
    cmd = [exe, "run", "--headless", "--run-dir", run_dir, "--for-pid", str(os.getpid())]
    if plan is not None:
        cmd.append(str(plan))
    with open(os.path.join(run_dir, "host.log"), "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    sock = os.path.join(run_dir, "control.sock")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(sock):
            return run_dir, sock
        if proc.poll() is not None:
            with open(os.path.join(run_dir, "host.log"), errors="replace") as f:
                _warn(f"the phasetop host exited ({proc.returncode}): {f.read().strip()}; this run is not recorded")
            return None, None
        time.sleep(0.02)
    _warn("the phasetop host did not start within 30 s; this run is not recorded")
    return None, None


def init(config=None, *, all_ranks=False, run_dir=None, plan=None, name=None, buffer_size=100_000):
    """Connects to the run ``phasetop run`` started (``PHASETOP_RUN_DIR``/``PHASETOP_SOCKET``
    in the environment). Without one, rank 0 starts a phasetop host itself (``plan``: an
    optional phase config) writing ``run_dir`` (default runs/NAME-UTC), which
    ``phasetop attach``/``replay`` read. ``config``: your hyperparameters, recorded once.
    ``all_ranks``: other ranks log too, their metrics named ``rank<R>/<name>``."""
    global _current
    rank = _env_int("RANK", 0)
    world = _env_int("WORLD_SIZE", 1)
    dist = _dist()
    if dist is not None:
        rank, world = dist.get_rank(), dist.get_world_size()
    sock = os.environ.get(ENV_SOCKET)
    rdir = os.environ.get(ENV_RUN_DIR)
    if rdir and not sock:
        sock = os.path.join(rdir, "control.sock")
    host = None
    if sock is None:
        if rank == 0:
            name = name or os.path.splitext(os.path.basename(sys.argv[0] or "python"))[0] or "python"
            rdir, sock = _start_host(run_dir, plan, name)
            if sock is not None:
                # Children (DataLoader workers, subprocesses) find the same run.
                os.environ[ENV_RUN_DIR] = rdir
                os.environ[ENV_SOCKET] = os.path.abspath(sock)
                host = True
        elif all_ranks:
            _warn("all_ranks=True needs `phasetop run` (the other ranks cannot find a host rank 0 started)")
    run = Run(sock, rdir, rank=rank, world_size=world, config=config, all_ranks=all_ranks, buffer_size=buffer_size)
    if host:
        run._host_process = _HostHandle(rdir)
    _current = run
    return run


class _HostHandle:
    """Waits for a host this client started to end its run (its socket disappears)."""

    def __init__(self, run_dir):
        self.sock = os.path.join(run_dir, "control.sock")

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while os.path.exists(self.sock) and time.monotonic() < deadline:
            time.sleep(0.02)


def current():
    """The run of the last ``init()``, or None."""
    return _current


def finish(status="completed", message=""):
    if _current is not None:
        _current.finish(status, message)


_failed = []
_prev_hook = sys.excepthook


def _hook(t, v, tb):
    _failed.append(f"{t.__name__}: {v}")
    _prev_hook(t, v, tb)


sys.excepthook = _hook


@atexit.register
def _at_exit():
    if _current is not None:
        if _failed:
            _current.finish("failed", _failed[-1])
        else:
            _current.finish()
