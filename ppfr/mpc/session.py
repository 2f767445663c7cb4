"""Deployments of the four parties, behind one interface (`Session`):

- LocalSession: client, two servers and dealer as objects in one process, each server and the dealer in
  its own long-lived thread (a server's runs the session's jobs one after another), connected by an
  InProcessNetwork. Starts at once; the servers share one interpreter lock, so their Python work does
  not overlap.
- ProcessSession: each server and the dealer in a process of its own, connected by OS sockets
  (transport.ConnectionChannel); the client stays in this process. Takes about a second to start, and
  then the parties compute in parallel. Programs and their arguments are sent to the server processes
  by pickle, so a program must be a module-level function.

    with LocalSession() as session:            # or ProcessSession()
        job = session.run(program, *args)      # program(server, *args) runs on both servers
        session.client.share(x)                # the client talks to them meanwhile
        y = session.client.reconstruct()
        results = job.result()                 # [what server 0 returned, what server 1 returned]

A failure in any party closes the network, so the others stop waiting and the error is re-raised.
Everything that runs a protocol (training, recognition, the gallery) takes a Session, or opens the one
the config names (`open_session`); nothing reaches into a session's transport.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import queue
import secrets
import signal
import threading
import traceback

from .channel import DEFAULT_TIMEOUT, PARTIES, InProcessNetwork
from .dealer import Dealer
from .errors import ProtocolAborted
from .fixedpoint import FixedPoint
from .party import Client, Server
from .placement import keep_to, servers_core
from .transport import ConnectionChannel


class Session:
    """What every deployment of the parties offers. `client` is the client party of this process; the
    servers and the dealer are wherever the session put them."""
    fixed: FixedPoint
    session_id: str
    client: Client

    def run(self, program, *args, per_server=((), ()), progress=None):
        """Start program(server, *args, *per_server[i]) on both servers; returns a job at once, whose
        result() waits for [what server 0 returned, what server 1 returned] or raises the root cause
        of a failure. What server 0 passes to report_progress reaches `progress`."""
        raise NotImplementedError

    def abort(self, reason: str) -> None:
        """Stop a running job from the client's side: parties waiting for a message give up."""
        raise NotImplementedError

    def stats(self) -> dict:
        """Each party's PartyStats (read between jobs)."""
        raise NotImplementedError

    def record_views(self) -> None:
        """From now on, every party records its view (channel.Channel.view), for the privacy tests."""
        raise NotImplementedError

    def views(self) -> dict:
        """{party: [("send" | "recv", peer, message), ...]} since record_views (read between jobs)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ServerWorkers:
    """A long-lived thread per server that runs a session's jobs one after another. Starting two threads
    for every job cost 1.6 ms a job on this machine, about a tenth of one face's whole protocol; handing a
    job to a waiting thread costs some 40 µs.

    `core`: the CPU core both threads keep to (placement.servers_core; None: anywhere), but for blocks of
    work that run long outside the interpreter lock (placement.any_core). The dealer and the client are
    left free, so the dealer's draws still run beside the servers."""

    def __init__(self, core: int | None = None):
        self._closed = False
        self._inboxes = [queue.SimpleQueue(), queue.SimpleQueue()]
        self._threads = [threading.Thread(target=self._serve, args=(inbox, core), daemon=True,
                                          name=f"ppfr-server{i}") for i, inbox in enumerate(self._inboxes)]
        for t in self._threads:
            t.start()

    @staticmethod
    def _serve(inbox, core):
        keep_to(core)
        while (task := inbox.get()) is not None:
            task()

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, i: int, task) -> None:
        """Run task() on server i's thread, after the tasks submitted before it."""
        if self._closed:  # nobody would run it, and its job would wait for ever
            raise ProtocolAborted("the session is closed: open a new one to run a program")
        self._inboxes[i].put(task)

    def close(self, timeout: float = 5.0) -> None:
        """Let each thread end once its current task has (a task waiting on a closed network ends at
        once)."""
        self._closed = True
        for inbox in self._inboxes:
            inbox.put(None)
        for t in self._threads:
            t.join(timeout=timeout)


class _Task:
    """One server's part of a job: set once it has returned or failed."""

    def __init__(self):
        self._done = threading.Event()

    def finish(self) -> None:
        self._done.set()

    def join(self) -> None:
        self._done.wait()

    def is_alive(self) -> bool:
        return not self._done.is_set()


class Job:
    """A program running on both servers of a session whose `servers` run on its `workers`."""

    def __init__(self, session, program, args, per_server, progress=None):
        self._results = [None, None]
        self._errors: list[BaseException | None] = [None, None]
        self._session = session
        self._progress = progress
        self._tasks = [_Task(), _Task()]
        for i in (0, 1):
            session.workers.submit(i, functools.partial(self._run, i, program, (*args, *per_server[i])))

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._tasks)

    def _run(self, i, program, args):
        server = self._session.servers[i]
        if i == 0:  # set when the job starts, not when it is queued behind another
            server.on_progress = self._progress
        try:
            self._results[i] = program(server, *args)
        except BaseException as e:  # noqa: BLE001 - reported to the caller by result()
            self._errors[i] = e
            self._session.abort(f"server{i} failed: {type(e).__name__}: {e}")
        finally:
            self._tasks[i].finish()

    def result(self):
        return _outcome(self._tasks, self._results, self._errors)


def _outcome(waits, results, errors):
    """Wait for both servers (threads or _Tasks: anything with join()); raise the root cause of a failure
    (not another party's "stopped waiting"), or return [what server 0 returned, what server 1 returned]."""
    for t in waits:
        t.join()
    failures = sorted((e for e in errors if e is not None), key=lambda e: isinstance(e, ProtocolAborted))
    if failures:
        raise failures[0]
    return list(results)


class LocalSession(Session):
    """latency: a round-trip time (seconds) that every message between the parties waits out, as over
    a WAN (channel.InProcessNetwork): for benchmarks. one_core: both server threads on one CPU core
    (ServerWorkers; False lets the OS place them, for side-by-side measurements)."""

    def __init__(self, fixed: FixedPoint | None = None, timeout: float = DEFAULT_TIMEOUT, latency: float = 0.0,
                 one_core: bool = True):
        self.fixed = fixed or FixedPoint()
        self.session_id = secrets.token_hex(8)
        self.network = InProcessNetwork(timeout=timeout, latency=latency)
        self.client = Client(self.network.channel("client"), self.fixed, self.session_id)
        self.servers = [Server(i, self.network.channel(f"server{i}"), self.fixed, self.session_id) for i in (0, 1)]
        self.dealer = Dealer(self.network.channel("dealer"))
        self._dealer_thread = threading.Thread(target=self.dealer.serve, daemon=True, name="ppfr-dealer")
        self._dealer_thread.start()
        self.workers = ServerWorkers(servers_core() if one_core else None)

    def run(self, program, *args, per_server=((), ()), progress=None) -> Job:
        return Job(self, program, args, per_server, progress)

    def abort(self, reason: str) -> None:
        self.network.close(reason)

    def stats(self) -> dict:
        return {name: self.network.channel(name).stats.copy() for name in self.network.parties}

    def record_views(self) -> None:
        for name in self.network.parties:
            self.network.channel(name).view = []

    def views(self) -> dict:
        return {name: list(self.network.channel(name).view or ()) for name in self.network.parties}

    def close(self) -> None:
        if self.workers.closed:
            return
        self.network.close()  # a job still running stops waiting, so the servers' last tasks come soon
        for i, server in enumerate(self.servers):
            self.workers.submit(i, server.close)  # on its own thread, after its jobs
        self.workers.close()
        self._dealer_thread.join(timeout=5)


# -- parties in processes ---------------------------------------------------------------------------------
# Who talks to whom: the client with each server, the servers with each other and with the dealer.
LINKS = (("client", "server0"), ("client", "server1"), ("server0", "server1"), ("server0", "dealer"),
         ("server1", "dealer"))
START_METHOD = "spawn"  # not fork: the parent may hold threads (BLAS, a camera) that fork would not copy


class ProcessSession(Session):
    def __init__(self, fixed: FixedPoint | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.fixed = fixed or FixedPoint()
        self.session_id = secrets.token_hex(8)
        context = multiprocessing.get_context(START_METHOD)
        ends = {name: {} for name in PARTIES}
        for a, b in LINKS:
            ends[a][b], ends[b][a] = context.Pipe(duplex=True)
        self._control, self._processes = {}, {}
        for name in ("server0", "server1", "dealer"):
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(target=_party_process, name=f"ppfr-{name}", daemon=True,
                                      args=(name, ends[name], theirs, self.fixed, self.session_id, timeout))
            process.start()
            theirs.close()
            for conn in ends[name].values():
                conn.close()  # the child holds its own copies; ours would hide its exit from the peers
            self._control[name], self._processes[name] = mine, process
        self._channel = ConnectionChannel("client", ends["client"], timeout)
        self.client = Client(self._channel, self.fixed, self.session_id)
        self._job: _ProcessJob | None = None
        self._closed = False

    def run(self, program, *args, per_server=((), ()), progress=None) -> "_ProcessJob":
        """As LocalSession.run; program and arguments must pickle (module-level functions, plain data)."""
        if self._job is not None and not self._job.done:
            raise RuntimeError("a job is still running in this session: call its result() first")
        self._job = _ProcessJob(self, program, args, per_server, progress)
        return self._job

    def stats(self) -> dict:
        return {"client": self._channel.stats.copy(), **self._ask_parties("stats")}

    def record_views(self) -> None:
        self._channel.view = []
        self._ask_parties("record")

    def views(self) -> dict:
        return {"client": list(self._channel.view or ()), **self._ask_parties("view")}

    def _ask_parties(self, command: str) -> dict:
        """Ask each party's process, between jobs, for something about itself."""
        if self._job is not None and not self._job.done:
            raise RuntimeError(f"{command} is read between jobs, not while one runs")
        out = {}
        for name, control in self._control.items():
            control.send((command,))
            out[name] = control.recv()
        return out

    def abort(self, reason: str) -> None:
        self._channel.close(reason)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for control in self._control.values():
            try:
                control.send(("close",))
            except OSError:
                pass
        self._channel.close()
        for process in self._processes.values():
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
        for control in self._control.values():
            control.close()


class _ProcessJob:
    """A program running in both server processes; a thread per server waits for its outcome and passes
    progress reports on meanwhile."""

    def __init__(self, session: ProcessSession, program, args, per_server, progress):
        self._results: list = [None, None]
        self._errors: list = [None, None]
        self._progress = progress
        for i in (0, 1):
            reports = progress is not None and i == 0
            session._control[f"server{i}"].send(("run", program, (*args, *per_server[i]), reports))
        self._threads = [threading.Thread(target=self._wait, args=(i, session._control[f"server{i}"]), daemon=True)
                         for i in (0, 1)]
        for t in self._threads:
            t.start()

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    def _wait(self, i, control):
        try:
            while True:
                kind, value = control.recv()
                if kind == "progress":
                    self._progress(*value)
                elif kind == "ok":
                    self._results[i] = value
                    return
                else:
                    self._errors[i] = value
                    return
        except (EOFError, OSError):
            self._errors[i] = ProtocolAborted(f"server{i}'s process ended during the job")

    def result(self):
        return _outcome(self._threads, self._results, self._errors)


def _start_view(channel):
    channel.view = []


PARTY_QUERIES = {  # what a party's process answers between jobs, from its channel
    "stats": lambda channel: channel.stats.copy(),
    "record": _start_view,
    "view": lambda channel: list(channel.view or ()),
}


def _party_process(name, connections, control, fixed, session_id, timeout):
    """The main function of a server's or the dealer's process: serve the session's commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the client's process, which stops us
    channel = ConnectionChannel(name, connections, timeout)
    if name == "dealer":
        party = Dealer(channel)
        threading.Thread(target=party.serve, daemon=True, name="ppfr-dealer").start()
    else:
        party = Server(int(name[-1]), channel, fixed, session_id)
    while True:
        try:
            command = control.recv()
        except (EOFError, OSError):
            break
        if command[0] == "close":
            break
        if command[0] in PARTY_QUERIES:
            control.send(PARTY_QUERIES[command[0]](channel))
            continue
        _, program, args, with_progress = command
        party.on_progress = (lambda *p: control.send(("progress", p))) if with_progress else None
        try:
            control.send(("ok", program(party, *args)))
        except BaseException as e:  # noqa: BLE001 - reported to the client's process
            channel.close(f"{name} failed: {type(e).__name__}: {e}")  # the others stop waiting for this one
            control.send(("error", _portable(e)))
    if name != "dealer":
        party.close()
    channel.close()


def _portable(error: BaseException) -> BaseException:
    """The error as it can cross to the client's process, with where it happened."""
    import pickle

    where = "".join(traceback.format_exception(error)).rstrip()
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        error = RuntimeError(f"{type(error).__name__}: {error}")
    if hasattr(error, "add_note"):
        error.add_note(f"in the server's process:\n{where}")
    return error


SESSIONS = {"threads": LocalSession, "processes": ProcessSession}
DEFAULT_PARTIES = "threads"


PARTIES_ENV = "PPFR_PARTIES"


def open_session(parties: str | None = None, fixed: FixedPoint | None = None,
                 timeout: float | None = None, comparisons: str | None = None) -> Session:
    """A session with the servers and the dealer in threads of this process, in processes of their own,
    or (a parties file, *.yaml) as network services (ppfr.net.remote), comparing by `comparisons`
    (protocols.use_comparisons: "bitwise" or "fss", or "auto": fss where a round between the servers,
    timed when the session opens, costs protocols.FSS_FROM_ROUND_SECONDS or more, else bitwise with
    comparisons by tables up to the size that round pays for, protocols.table_words_for; with fss, exp
    by tables for calls of up to the config's mpc.exp_table_values values, lut.use_exp_tables), each
    party giving up after `timeout` seconds without a message it waits for. `parties` None takes
    $PPFR_PARTIES (what a command's --parties FILE sets), else the config's `mpc.parties`; the others
    None the config's `mpc.comparisons` and `mpc.timeout`."""
    from ppfr.config import section

    from .lut import TABLE_MAX_VALUES, use_exp_tables
    from .protocols import (COMPARISONS, TABLES_MAX_WORDS, choose_comparisons, round_seconds, table_words_for,
                            use_comparison_tables, use_comparisons)

    config = section("mpc")
    if parties is None:
        parties = os.environ.get(PARTIES_ENV) or config.get("parties", DEFAULT_PARTIES)
    comparisons = config.get("comparisons", COMPARISONS[0]) if comparisons is None else comparisons
    table_values = int(config.get("exp_table_values", TABLE_MAX_VALUES))
    timeout = float(config.get("timeout", DEFAULT_TIMEOUT)) if timeout is None else timeout
    remote = str(parties).endswith((".yaml", ".yml"))  # a parties file: the servers and dealer are services
    if not remote and parties not in SESSIONS:
        raise ValueError(f"parties run in {' or '.join(SESSIONS)}, not {parties!r}")
    if comparisons not in COMPARISONS + ("auto",):
        raise ValueError(f"comparisons are {', '.join(COMPARISONS)} or auto, not {comparisons!r}")
    if remote:
        from ppfr.net.remote import open_remote

        session = open_remote(parties, fixed=fixed, timeout=timeout)
    else:
        session = SESSIONS[parties](fixed=fixed, timeout=timeout)
    table_words = TABLES_MAX_WORDS
    if comparisons == "auto":  # by what a round between the servers costs, measured now
        round_cost = max(session.run(round_seconds).result())
        comparisons = choose_comparisons(round_cost)
        table_words = table_words_for(round_cost)
    if comparisons != COMPARISONS[0]:
        session.run(use_comparisons, comparisons).result()
    elif table_words != TABLES_MAX_WORDS:
        session.run(use_comparison_tables, table_words).result()
    if table_values != TABLE_MAX_VALUES:
        session.run(use_exp_tables, True, table_values).result()
    return session
