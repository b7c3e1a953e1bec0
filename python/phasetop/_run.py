"""The client: ``init`` → ``Run`` (log, sync, probe, checkpoint, finish).

Rank 0 alone talks to the host, on two connections to the run's socket: one for the
request/reply frames (hello, sync, finish), used on the caller's thread, and one for the
fire-and-forget frames (log, probe, checkpoint), written by a background thread from an
in-memory buffer. ``log()`` only appends to that buffer, so it never waits on the host;
when the buffer is full, points are dropped and counted, and the host records a
``dropped`` notice. ``sync()`` hands every rank the host's answer at the same step: rank 0
reads it one meeting late (so it never waits on the host) and, with a torch.distributed
process group, broadcasts it at meetings of the ranks every K-th sync (see the sync
section and docs/CLIENT.md).

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

PROTOCOL = 2
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


def _host_timeout():
    """Seconds to wait on the host before declaring it lost (PHASETOP_HOST_TIMEOUT_S, 60)."""
    try:
        t = float(os.environ.get("PHASETOP_HOST_TIMEOUT_S", "60"))
    except ValueError:
        return 60.0
    return t if t > 0 else 60.0


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


_MAX_NAME = 200  # bytes, as the host's protocol (crates/core/src/external/protocol.rs)


def _name_problem(k):
    """Why ``k`` cannot be a metric name, or None."""
    if not isinstance(k, str):
        return f"metric name {k!r} is not a string"
    if not k:
        return "a metric name must not be empty"
    if len(k.encode()) > _MAX_NAME:
        return f"metric name {k[:40]!r}… is longer than {_MAX_NAME} bytes"
    for c in k:
        if c.isspace() or not c.isprintable():
            return f"metric name {k!r} holds {c!r}: names have no spaces or control characters"
    return None


def _value_problem(v):
    """Why ``v`` cannot be a metric value, or None (a number, a one-element tensor or
    numpy scalar; NaN and infinities are recorded as missing values)."""
    if isinstance(v, bool):
        return f"{v!r} is a bool, not a number"
    if isinstance(v, (int, float)):
        return None
    if isinstance(v, (str, bytes, dict, list, tuple, set)):
        return f"{type(v).__name__} {str(v)[:40]!r} is not a number"
    try:
        float(v)
        return None
    except (TypeError, ValueError):
        return f"{type(v).__name__} is not a number (a one-element tensor or a float is)"


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
                 buffer_size=100_000, flush_interval=0.05, host_process=None, strict=True, tags=None, notes=None,
                 group=None):
        self.run_dir = run_dir
        self.rank = rank
        self.world_size = world_size
        self.phase = None
        self.settings = {}
        #: After ``phasetop run --resume``: the step the run goes on from, and the path of
        #: the checkpoint this job recorded there (``run.checkpoint``), to load; else None.
        self.resumed_from = None
        self.latest_checkpoint = None
        #: Every ``ctl set`` received, key → latest value.
        self.overrides = {}
        # The `set` values since the phase began: ``settings`` is the phase's settings
        # with these on top (a new phase brings its own, as the built-in trainer's do).
        self._set_in_phase = {}
        #: A name or value ``log`` cannot record raises at the call (False: warns once per
        #: name on stderr and leaves that metric out).
        self.strict = strict
        #: The run's final figures: ``run.summary["best_acc"] = 0.97`` is recorded (the last
        #: value of a key wins) and shown where final metrics are (inspect, the dashboard).
        self.summary = _Summary(self)
        #: The script's config as given to ``init(config=…)`` (when a mapping);
        #: ``run.config.update({…})`` or ``run.config[key] = value`` records more keys
        #: (SummaryWriter's ``add_hparams`` does this). Rank 0's is the run's.
        self.config = _Config(self, _jsonable(config))
        self._good_names = set()
        self._warned_names = set()
        self._socket_path = socket_path
        self._talks = rank == 0 and socket_path is not None
        self._logs = socket_path is not None and (rank == 0 or all_ranks)
        self._all_ranks = all_ranks
        self._buf = collections.deque()
        self._cap = buffer_size
        self._dropped = 0
        self._step = 0
        self._dead = False
        # The last step the host had recorded when it was lost (None: never connected).
        self._lost_at = None
        self._finished = False
        self._warned = set()
        self._lock = threading.Lock()
        self._lock_lose = threading.Lock()
        self._flush_interval = flush_interval
        self._host_process = host_process
        self._last = {"phase": None, "settings": {}}
        # sync's state (see the sync section): the answer not yet read, what waits for
        # the next meeting, the meeting schedule and the timings it is chosen from.
        self._outstanding = False
        self._held = None
        self._boundary = None
        self._calls = 0
        self._meetings = 0
        self._next_meeting = 0
        self._sync_step = None
        self._stride = None
        self._t_call = None
        self._interval = None
        self._meet_cost = None
        self._quiet = None
        self._sock = self._rfile = self._lsock = None
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop_sender = False
        self._sender = None
        # After a lost host (a timeout): a thread that tries to reach it again, and the
        # connections it made, adopted by rank 0 at its next meeting.
        self._logs_wanted = self._logs
        self._rejoiner = None
        self._rejoined = None
        if socket_path is None:
            return
        try:
            if self._talks:
                self._sock = self._connect()
                self._rfile = self._sock.makefile("rb")
                hello = {"type": "hello", "protocol": PROTOCOL, "rank": rank, "world_size": world_size,
                         "pid": os.getpid(), "config": _jsonable(config), "client": "python phasetop 0.1",
                         "tags": [str(t) for t in (tags or [])], "notes": str(notes or "")}
                if group is not None:
                    hello["group"] = str(group)
                welcome = self._request(hello)
                if welcome.get("type") == "error":
                    raise OSError(welcome.get("message"))
                self.phase = welcome.get("phase")
                self.settings = welcome.get("settings") or {}
                self._boundary = welcome.get("boundary")
                self.resumed_from = welcome.get("resumed_from")
                if welcome.get("checkpoint") and run_dir is not None:
                    self.latest_checkpoint = os.path.join(run_dir, welcome["checkpoint"])
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

    def _connect(self, timeout=None):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(_host_timeout() if timeout is None else timeout)
        s.connect(self._socket_path)
        return s

    def _request(self, frame):
        if self._outstanding:
            self._read_reply()
        with self._lock:
            self._sock.sendall(_dumps(frame))
            line = self._rfile.readline()
        if not line:
            raise OSError("the host closed the connection")
        return json.loads(line)

    def _lose(self, why):
        """The host is gone: training goes on, nothing is recorded until rank 0 reaches
        the host again (a host that was only stopped or starved answers again)."""
        with self._lock_lose:
            if self._dead:
                return
            self._dead = True
            if self._sock is not None or self._lsock is not None:
                self._lost_at = self._step
            self._logs = False
            self._buf.clear()
            again = self._talks and self._lost_at is not None and not self._finished
            _warn(f"{why}; training goes on, nothing is recorded"
                  + (" until the host answers again" if again else ""))
            if again and self._rejoiner is None:
                self._rejoiner = threading.Thread(target=self._rejoin_loop, name="phasetop-rejoin", daemon=True)
                self._rejoiner.start()

    # How often a lost host is tried again: from the first delay, doubling to the last.
    _REJOIN_FIRST_S = 0.5
    _REJOIN_LAST_S = 30.0

    def _rejoin_loop(self):
        """Off the training path: connects to the lost host again, says `hello` with
        `rejoin` and, once welcomed, leaves the connections for rank 0 to adopt at its
        next meeting (`_adopt`). A host that refuses the rejoin is not asked again."""
        wait = self._REJOIN_FIRST_S
        lost_at = self._lost_at
        while not self._finished:
            time.sleep(wait)
            wait = min(wait * 2, self._REJOIN_LAST_S)
            socks = []
            try:
                s = self._connect()
                socks.append(s)
                s.sendall(_dumps({"type": "hello", "protocol": PROTOCOL, "rank": self.rank,
                                  "world_size": self.world_size, "pid": os.getpid(),
                                  "client": "python phasetop 0.1", "rejoin": lost_at}))
                rfile = s.makefile("rb")
                welcome = json.loads(rfile.readline() or b"{}")
                if welcome.get("type") == "error":
                    _warn(f"the run's host refused to take the job back ({welcome.get('message')})")
                    s.close()
                    return
                if welcome.get("type") != "welcome":
                    raise OSError("no welcome")
                lsock = None
                if self._logs_wanted:
                    lsock = self._connect()
                    socks.append(lsock)
                    lsock.settimeout(None)
                self._rejoined = (s, rfile, lsock, welcome)
                return
            except (OSError, ValueError):
                for x in socks:
                    try:
                        x.close()
                    except OSError:
                        pass

    def _adopt(self, step):
        """Rank 0, at a meeting: takes the connections the rejoin thread made; the
        host's phase, settings, pause and stop as it answered (an answer to apply now,
        like a sync's), and recording goes on from this step."""
        s, rfile, lsock, welcome = self._rejoined
        self._rejoined = self._rejoiner = None
        # The new connections first: a sender still writing to the old one then fails
        # on a connection that is no longer the run's, and carries on with the new one.
        old_socks = (self._sock, self._lsock)
        self._sock, self._rfile, self._lsock = s, rfile, lsock
        for old in old_socks:
            if old is not None:
                try:
                    old.shutdown(socket.SHUT_RDWR)
                    old.close()
                except OSError:
                    pass
        self._outstanding = False
        self._boundary = welcome.get("boundary")
        answer = dict(self._quiet_reply(step), type="control", phase=welcome.get("phase"),
                      settings=welcome.get("settings") or {}, paused=bool(welcome.get("paused")),
                      should_stop=bool(welcome.get("should_stop")), boundary=welcome.get("boundary"))
        answer["phase_changed"] = answer["phase"] != self.phase
        self._hold(answer)
        lost_at, self._lost_at = self._lost_at, None
        self._logs = self._logs_wanted
        self._dead = False
        if self._logs and (self._sender is None or not self._sender.is_alive()):
            self._sender = threading.Thread(target=self._send_loop, name="phasetop-sender", daemon=True)
            self._sender.start()
        _warn(f"reached the run's host again at step {step}; recording goes on "
              f"(nothing was recorded after step {lost_at})")

    def _warn_once(self, msg):
        if msg not in self._warned and len(self._warned) < 100:
            self._warned.add(msg)
            _warn(msg)

    # -- log --------------------------------------------------------------------------

    def log(self, metrics, step=None):
        """Queues metrics for ``step`` (the last step given when None). Never blocks:
        beyond the buffer's bound, points are dropped and counted. On ranks other than
        0 a no-op unless ``init(all_ranks=True)``."""
        metrics = self._checked(metrics, step)
        if step is not None:
            step = self._checked_step(step)
        if not self._logs:
            return
        if step is None:
            step = self._step
        else:
            self._step = step
        if len(self._buf) >= self._cap:
            self._dropped += len(metrics)
            return
        # With the script's own clock: the host's steps_per_s is the script's rate, not
        # the rate its frames happen to arrive at.
        self._buf.append((step, dict(metrics), time.time()))
        if len(self._buf) >= _FRAME_POINTS:
            self._wake.set()

    def _send_summary(self, values):
        """Queues a summary frame (rank 0, or every rank with ``all_ranks``)."""
        if self._logs:
            v = {k: (None if isinstance(x, float) and not math.isfinite(x) else x) for k, x in values.items()}
            self._buf.append((self._step, None, {"type": "summary", "step": self._step, "values": v}))

    def _send_config(self, values):
        if self._logs:
            self._buf.append((self._step, None, {"type": "config", "values": _jsonable(values)}))

    def text(self, tag, text, step=None):
        """Records a line of text (a note, a sample's output) as an event at ``step`` (the
        last step given when None); shown in the dashboard's events and by ``inspect``.
        Up to 4 KiB of text is kept."""
        if not isinstance(tag, str) or not tag or len(tag.encode()) > 200:
            raise ValueError(f"phasetop: text tag {tag!r}: 1 to 200 bytes of text expected")
        if step is not None:
            step = self._checked_step(step)
        if self._logs:
            s = self._step if step is None else step
            self._buf.append((s, None, {"type": "text", "step": s, "tag": tag, "text": str(text)}))

    def _checked_step(self, step):
        if isinstance(step, bool) or not hasattr(step, "__index__"):
            raise TypeError(f"phasetop: log step {step!r} is not a whole number")
        step = step.__index__()
        if step < 0 or step > 2**53:
            raise ValueError(f"phasetop: log step {step} is out of range (0 to 2**53)")
        return step

    def _checked(self, metrics, step):
        """``metrics`` as they can be recorded, checked at the call: a name or value that
        cannot be raises (strict) or is left out with a warning once per name."""
        if not isinstance(metrics, dict):
            raise TypeError(f"phasetop: log takes a dict of metrics, not {type(metrics).__name__}")
        bad = None
        for k, v in metrics.items():
            error = None
            if k not in self._good_names:
                why = _name_problem(k)
                if why is not None:
                    error = ValueError(f"phasetop: {why}")
                elif len(self._good_names) < 100_000:
                    self._good_names.add(k)
            if error is None and type(v) is not float and type(v) is not int:
                why = _value_problem(v)
                if why is not None:
                    at = step if step is not None else self._step
                    error = TypeError(f"phasetop: metric {k!r} at step {at}: {why}")
            if error is not None:
                if self.strict:
                    raise error
                if k not in self._warned_names and len(self._warned_names) < 1000:
                    self._warned_names.add(k)
                    _warn(f"{str(error).removeprefix('phasetop: ')}; not recorded (strict=False; said once per name)")
                bad = bad or set()
                bad.add(k)
        if bad:
            return {k: v for k, v in metrics.items() if k not in bad}
        return metrics

    def _frames(self, items):
        """Log frames for queued items (point tuples and ready frames), in order."""
        points = []
        rank = self.rank if (self._all_ranks and self.rank != 0) else None
        for it in items:
            if it[1] is not None:
                p = {"step": it[0], "metrics": it[1], "t": it[2]}
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
                sock = self._lsock
                try:
                    for frame in self._frames(items):
                        sock.sendall(frame)
                    self._drain_replies(sock)
                except OSError as e:
                    if sock is self._lsock:
                        self._lose(f"lost the run's host ({e})")
                        self._idle.set()
                        return
                    # A connection given up for a new one (the host reached again).
                    continue
            if not buf:
                self._idle.set()
            if self._stop_sender and not buf:
                return

    def _drain_replies(self, sock):
        # Only a frame the host could not read is answered here; say so once.
        import select

        if not select.select([sock], [], [], 0)[0]:
            return
        data = sock.recv(65536)
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
    #
    # Protocol 2 keeps the host off the training step's path. Rank 0 talks to the host
    # only at a meeting: every call without a process group; with one, every K-th call,
    # where all ranks meet in one broadcast. It sends `sync` and reads the answer at the
    # next meeting (by then it has long arrived) and applies it there. Rank 0 chooses K so
    # the meetings cost about ½ % of the step time (and a switch waits at most ~1 s),
    # and puts a meeting on the step where the host said the phase plan ends
    # (`boundary`): there it asks and waits, so scheduled switches land on their step.
    # The sync after applying a phase change tells the host the step (`applied`); the
    # host logs the change at that step, the one every rank applied it at.

    _MEET_SHARE = 0.005     # meetings' share of the step time rank 0 aims at
    _MEET_MAX_S = 1.0       # longest wait for a change between meetings

    def _quiet_reply(self, step):
        return dict(self._last, step=step, phase_changed=False, set={}, should_stop=False, paused=False,
                    checkpoint=False, errors=[], dropped=0)

    def _read_reply(self):
        """The answer to the sync sent last (normally already waiting)."""
        self._outstanding = False
        with self._lock:
            line = self._rfile.readline()
        if not line:
            raise OSError("the host closed the connection")
        reply = json.loads(line)
        if reply.get("type") != "control":
            self._warn_once(f"unexpected answer to sync: {reply}")
            return None
        self._boundary = reply.get("boundary")
        return reply

    def _send_sync(self, step, applied):
        frame = {"type": "sync", "step": step}
        if applied is not None:
            frame["applied"] = applied
        with self._lock:
            self._sock.sendall(_dumps(frame))
        self._outstanding = True

    def _hold(self, reply):
        """Keeps an answer for the next meeting, merged with what already waits."""
        self._held = _merge(self._held, reply)

    def _root_exchange(self, step, meeting):
        """Rank 0's talk with the host, at meetings only: collect the answer to the last
        sync and send this one (asking and waiting where the plan ends or the run is
        paused). Returns the answer to apply (None between meetings)."""
        if not meeting:
            return None
        if self._dead and self._rejoined is not None:
            self._adopt(step)
        if not self._talks or self._dead:
            return self._quiet_reply(step)
        try:
            if self._outstanding:
                self._hold(self._read_reply())
            if self._boundary is not None and step >= self._boundary:
                # The plan ends here: ask now, so the switch (or stop) is on this step.
                self._send_sync(step, None)
                self._hold(self._read_reply())
            reply, self._held = self._held, None
            reply = self._quiet_reply(step) if reply is None else reply
            applied = step if reply.get("phase_changed") else None
            while reply.get("paused") and not reply.get("should_stop"):
                time.sleep(0.1)
                self._send_sync(step, applied)
                applied = None
                r = self._read_reply()
                if r is not None and r.get("phase_changed"):
                    applied = step
                reply = _merge(reply, r)
            self._send_sync(step, applied)
        except (OSError, ValueError) as e:
            self._lose(f"lost the run's host ({e})")
            return self._quiet_reply(step)
        return reply

    def _schedule(self, step):
        """Rank 0, at a meeting: the call of the next meeting."""
        k = 1
        if self._interval and self._meet_cost:
            k = math.ceil(self._meet_cost / (self._MEET_SHARE * self._interval))
            k = max(1, min(k, int(self._MEET_MAX_S / self._interval) or 1, 1000))
        if self._boundary is not None and self._stride:
            if step < self._boundary:
                k = max(1, min(k, math.ceil((self._boundary - step) / self._stride)))
            else:
                # At the boundary the host gave: the next one (a later phase's end, the
                # run's max_steps) comes with the answer now outstanding, so meet at the
                # next call to learn it. Scheduling by timing alone from here overshot a
                # max_steps 163 steps away on a busy machine (the stop landed 20 late).
                k = 1
        return self._calls + k

    def sync(self, step=None):
        """Every rank calls it at the same step boundary (the same number of times).
        Returns a :class:`Control`: what changed since the last answer (a phase, `set`,
        a stop, a pause, a checkpoint), the same on every rank, at the same step.
        Rank 0 never waits on the host here except where the phase plan ends and while
        the run is paused."""
        if step is None:
            step = self._step
        else:
            self._step = step
        if self._sync_step is not None and step > self._sync_step:
            self._stride = step - self._sync_step
        self._sync_step = step
        self._calls += 1
        dist = _dist()
        root = self._is_root(dist)
        meeting = dist is None or self._calls >= self._next_meeting
        if root and dist is not None:
            now = time.perf_counter()
            if self._t_call is not None:
                gap = now - self._t_call
                self._interval = gap if self._interval is None else 0.8 * self._interval + 0.2 * gap
            self._t_call = now
        t_meet = time.perf_counter()
        reply = self._root_exchange(step, meeting) if root else None
        if not meeting:
            return self._quiet
        self._meetings += 1
        if dist is not None:
            reply = self._broadcast(dist, reply, step)
            if root:
                cost = time.perf_counter() - t_meet
                self._meet_cost = cost if self._meet_cost is None else 0.8 * self._meet_cost + 0.2 * cost
        ctl = Control(reply)
        if ctl.phase_changed or ctl.phase != self.phase:
            self._set_in_phase = {}
        self._set_in_phase.update(ctl.set)
        self.phase = ctl.phase
        self.settings = dict(ctl.settings, **self._set_in_phase)
        # Every rank's quiet answers carry the phase it is in (not only rank 0's).
        self._last = {"phase": ctl.phase, "settings": ctl.settings}
        self.overrides.update(ctl.set)
        self._quiet = Control(dict(reply, phase_changed=False, set={}, should_stop=ctl.should_stop, paused=False,
                                   checkpoint=False, errors=[]))
        if self.rank == 0:
            for e in ctl.errors:
                self._warn_once(e)
        return ctl

    def _broadcast(self, dist, reply, step):
        """Rank 0's answer on every rank, at a meeting: a two-number broadcast (quiet or
        not, and the call of the next meeting); an answer that changes something is then
        pickled and broadcast whole with ``broadcast_object_list``."""
        import torch

        quiet = reply is not None and not (
            reply.get("phase_changed") or reply.get("set") or reply.get("should_stop")
            or reply.get("paused") or reply.get("checkpoint") or reply.get("phase") != self.phase)
        nxt = self._schedule(step) if reply is not None else 0
        head = torch.tensor([1 if quiet else 0, nxt], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            head = head.cuda()
        dist.broadcast(head, src=0)
        quiet, self._next_meeting = int(head[0].item()) == 1, int(head[1].item())
        if quiet:
            return reply if reply is not None else self._quiet_reply(step)
        box = [reply]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _share_start(self):
        """Every rank starts in rank 0's phase with its settings, at ``init``: with a
        process group, rank 0's welcome is broadcast; without one (ranks that have not
        made a group yet), another rank asks the host itself on a connection of its own."""
        dist = _dist()
        if dist is not None:
            box = [{"phase": self.phase, "settings": self.settings, "resumed_from": self.resumed_from,
                    "checkpoint": self.latest_checkpoint} if self.rank == 0 else None]
            dist.broadcast_object_list(box, src=0)
            start = box[0] or {}
        elif self.rank != 0 and self._socket_path is not None:
            try:
                s = self._connect()
                try:
                    s.sendall(_dumps({"type": "hello", "protocol": PROTOCOL, "rank": self.rank,
                                      "world_size": self.world_size, "pid": os.getpid(), "client": "python phasetop 0.1"}))
                    start = json.loads(s.makefile("rb").readline() or b"{}")
                finally:
                    s.close()
            except (OSError, ValueError) as e:
                _warn(f"rank {self.rank} could not ask the run's host for the first phase ({e})")
                return
            if start.get("type") != "welcome":
                return
        else:
            return
        self.phase = start.get("phase")
        self.settings = start.get("settings") or {}
        self.resumed_from = start.get("resumed_from")
        ckpt = start.get("checkpoint")
        if ckpt and self.run_dir is not None and not os.path.isabs(ckpt):
            ckpt = os.path.join(self.run_dir, ckpt)
        self.latest_checkpoint = ckpt
        self._last = {"phase": self.phase, "settings": self.settings}

    def _is_root(self, dist=None):
        dist = dist or _dist()
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
        elif self._talks and self._lost_at is not None:
            # The host was lost (a timeout: it may only have been stopped): tell it, on a
            # new connection, the step the job ran to, so the run's end says it truthfully.
            try:
                s = self._connect(timeout=5)
                try:
                    s.sendall(_dumps({"type": "finish", "step": self._step, "status": status, "message": message,
                                      "lost_at": self._lost_at}))
                    s.makefile("rb").readline()
                finally:
                    s.close()
            except (OSError, ValueError):
                pass
        pending = self._rejoined
        self._rejoined = None
        for s in (self._sock, self._lsock) + ((pending[0], pending[2]) if pending else ()):
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
            # Its run is over: a later init() (a notebook's next run) starts its own.
            for k in (ENV_RUN_DIR, ENV_SOCKET):
                os.environ.pop(k, None)
        if _current is self:
            _current = None


class _Summary(dict):
    """``run.summary``: a dict whose writes are recorded (numbers, strings, booleans)."""

    def __init__(self, run):
        super().__init__()
        self._run = run

    def __setitem__(self, key, value):
        why = _name_problem(key)
        if why is not None:
            raise ValueError(f"phasetop: summary: {why}")
        if not isinstance(value, (str, bool)) and value is not None:
            why = _value_problem(value)
            if why is not None:
                raise TypeError(f"phasetop: summary {key!r}: {why}")
            value = float(value)
        super().__setitem__(key, value)
        self._run._send_summary({key: value})

    def update(self, *args, **kw):
        for k, v in dict(*args, **kw).items():
            self[k] = v


class _Config(dict):
    """``run.config``: the job's config; keys written after ``init`` are recorded (the
    run's config in ``inspect``, run.json's copy stays as ``init`` gave it)."""

    def __init__(self, run, initial):
        super().__init__(initial if isinstance(initial, dict) else {})
        self._run = run

    def __setitem__(self, key, value):
        self.update({key: value})

    def update(self, *args, **kw):
        values = {str(k): v for k, v in dict(*args, **kw).items()}
        for k, v in values.items():
            super().__setitem__(k, v)
        if values:
            self._run._send_config(values)


def _merge(held, reply):
    """Two sync answers as one: the later's phase, settings and pause; changes, stops,
    checkpoints, `set` values and errors of both."""
    if reply is None:
        return held
    if held is None:
        return dict(reply, set=dict(reply.get("set") or {}), errors=list(reply.get("errors") or []))
    for k in ("step", "phase", "settings", "paused", "dropped", "boundary"):
        if k in reply:
            held[k] = reply[k]
    for k in ("phase_changed", "should_stop", "checkpoint"):
        held[k] = bool(held.get(k)) or bool(reply.get(k))
    held["set"].update(reply.get("set") or {})
    held["errors"].extend(reply.get("errors") or [])
    return held


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
    try:
        with open(os.path.join(run_dir, "host.log"), "ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    except OSError as e:
        _warn(f"cannot start the phasetop host {exe!r} ({e}); this run is not recorded")
        return None, None
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


def init(config=None, *, tags=None, notes=None, group=None, all_ranks=False, run_dir=None, plan=None, name=None,
         buffer_size=100_000, strict=True):
    """Connects to the run ``phasetop run`` started (``PHASETOP_RUN_DIR``/``PHASETOP_SOCKET``
    in the environment). Without one, rank 0 starts a phasetop host itself (``plan``: an
    optional phase config) writing ``run_dir`` (default runs/NAME-UTC), which
    ``phasetop attach``/``replay`` read. ``config``: your hyperparameters, recorded once.
    ``tags`` (a list of strings), ``notes`` and ``group``: recorded with the config, shown
    by ``inspect``, ``ls`` and the dashboard. ``all_ranks``: other ranks log too, their metrics named ``rank<R>/<name>``.
    ``strict``: ``log`` raises at once on a name or value it cannot record (False: warns
    once per name and leaves it out). After ``finish()``, ``init()`` starts a new run."""
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
                # Children (DataLoader workers, subprocesses) find the same run, until it
                # finishes (then the next init starts a new one).
                os.environ[ENV_RUN_DIR] = rdir
                os.environ[ENV_SOCKET] = os.path.abspath(sock)
                host = True
        elif all_ranks:
            _warn("all_ranks=True needs `phasetop run` (the other ranks cannot find a host rank 0 started)")
    run = Run(sock, rdir, rank=rank, world_size=world, config=config, all_ranks=all_ranks, buffer_size=buffer_size,
              strict=strict, tags=tags, notes=notes, group=group)
    run._share_start()
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
