"""Parties are separate: a server's program reaches only its own state, the dealer refuses two servers that
ask for different things, and what one party sends another can no longer change."""
import queue
import threading
import types
from collections import deque

import numpy as np
import pytest

import privacy

from ppfr.mpc import LocalSession, ProtocolAborted, Server
from ppfr.mpc import channel as channel_module
from ppfr.mpc.channel import InProcessNetwork
from ppfr.mpc.dealer import Dealer
from ppfr.mpc.material import request_from_wire
from ppfr.mpc.party import Client
from ppfr.mpc.session import Session

FOREIGN = (Server, Client, Dealer, InProcessNetwork, Session)


def reachable(root, limit: int = 100_000):
    """Every object reachable from `root` through instance attributes, containers and bound methods: what
    a program handed `root` can get at without reaching for modules, classes or the garbage collector."""
    seen, todo, out = set(), [root], []
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType, threading.Thread,
                                               str, bytes, int, float, np.ndarray)):
            continue
        seen.add(id(obj))
        out.append(obj)
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            todo.extend(obj)
        elif isinstance(obj, types.MethodType):
            todo.append(obj.__self__)
        else:
            todo.extend(getattr(obj, "__dict__", {}).values())
            todo.extend(getattr(obj, s) for s in getattr(type(obj), "__slots__", ()) if hasattr(obj, s))
    return out


def _what_a_server_reaches(srv):
    objects = reachable(srv)
    foreign = [type(o).__name__ for o in objects if isinstance(o, FOREIGN) and o is not srv]
    queues = [o for o in objects if isinstance(o, queue.SimpleQueue)]
    own = list(srv.channel._outgoing.values()) + list(srv.channel._incoming.values())
    return foreign, len(queues), all(any(q is o for o in own) for q in queues), len(own)


def test_a_server_program_reaches_only_its_own_state_and_queues():
    with LocalSession() as session:
        foreign, count, all_own, own = session.run(_what_a_server_reaches).result()[0]
    assert foreign == []
    assert all_own and count == own == 6   # to and from each of the three others: nobody else's queue


def test_the_reachability_test_catches_an_endpoint_that_keeps_the_network(monkeypatch):
    """The design this replaced: each endpoint kept the whole network, so server 0 could take server 1's
    input share from its queue."""
    init = channel_module._InProcessChannel.__init__
    network = {}

    def keeps_network(self, *args, **kw):
        init(self, *args, **kw)
        self._net = network.get("it")
    monkeypatch.setattr(channel_module._InProcessChannel, "__init__", keeps_network)
    orig = InProcessNetwork.__init__

    def remember(self, *a, **kw):
        network["it"] = self
        orig(self, *a, **kw)
    monkeypatch.setattr(InProcessNetwork, "__init__", remember)
    with LocalSession() as session:
        foreign, _, all_own, _ = session.run(_what_a_server_reaches).result()[0]
    assert "InProcessNetwork" in foreign and not all_own


def _asks_for_its_own_shape(srv):
    srv.provider.triples([("mul", (2 + srv.index,), (2 + srv.index,))]).get()


def test_the_dealer_refuses_servers_that_ask_for_different_material():
    with LocalSession(timeout=20) as session:
        with pytest.raises(ProtocolAborted, match="different material under ticket 0"):
            session.run(_asks_for_its_own_shape).result()


def test_a_server_refuses_material_that_is_not_what_it_asked_for(monkeypatch):
    squares = request_from_wire("squares", (((3,),),))
    monkeypatch.setattr(Dealer, "_matching", staticmethod(  # a dealer that answers something else
        lambda a0, a1: (a0[1], [(squares, squares.to_wire())])))
    with LocalSession(timeout=20) as session:
        with pytest.raises(ProtocolAborted, match="not the triples asked for"):
            session.run(_asks_for_its_own_shape).result()


def _send_then_change(srv):
    if srv.index == 0:
        mine = np.arange(5, dtype=np.uint64)
        srv.channel.send("server1", mine)
        mine[:] = 99                       # the sender changes its array after sending
        return srv.channel.recv("server1")
    got = srv.channel.recv("server0")
    before = got.copy()
    got[:] = 7                             # the receiver writes into what it received
    srv.channel.send("server0", before)
    return got


def test_what_was_sent_can_no_longer_change_on_either_side():
    with LocalSession() as session:
        seen_by_1, written_by_1 = session.run(_send_then_change).result()
    np.testing.assert_array_equal(seen_by_1, np.arange(5))   # the receiver got what was sent, not the 99s
    np.testing.assert_array_equal(written_by_1, 7)           # and its writes stayed its own


def _material_views(srv):
    from ppfr.mpc.functions import exp

    srv.channel.view = []
    exp(srv.receive())
    got = [a for d, peer, m in srv.channel.view if peer == "dealer" and d == "recv" for a in privacy.arrays(m)]
    return len(got), sum(a.base is not None for a in got)


def test_dealer_material_owns_its_memory():
    """The dealer draws a chain's masks in one block; a server gets copies of its rows, never a view
    whose base would show the rest of the block (the masks themselves)."""
    with LocalSession() as session:
        job = session.run(_material_views)
        session.client.share(np.linspace(-5, 0, 100))
        (count, views), _ = job.result()
    assert count > 10 and views == 0
