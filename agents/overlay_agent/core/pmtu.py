"""Path-MTU search with blackhole classification, free of I/O and of the clock.

The caller (:mod:`overlay_agent.io.pmtu`) sends the probes this machine asks for, feeds back
what came of them (an echo, an ICMP "too big" or "time exceeded" read from the socket's error
queue, a local EMSGSIZE) and passes ``now`` into every call. Sizes are whole IP packets.

Rounds, each ending when every probe is answered or ``timeout`` has passed:

1. a few small *control* probes (same 5-tuple), the largest size the local interface takes and
   the common plateaus below it (most paths are decided here, in one round trip);
2. while the largest passing size ``lo`` and the smallest failing size ``hi`` are apart: up to
   ``width`` sizes between them at once (common plateaus first, then evenly spaced), so the gap
   shrinks by ``width + 1`` per round; a PTB narrows it at once to the MTU it names;
3. for a blackhole only: large and small probes with TTL 1..``max_ttl``; the last router that
   answers "time exceeded" to the large ones is where they vanish;
4. over IPv4, when a hop beyond the host is smaller than the host's own link: probes of the
   local MTU *without* DF (*fragment* probes, sent with the hop probes or in a round of their
   own), which a router fragments instead of dropping: do IPv4 fragments cross this path?
   That is what a sender without DF (a kernel VXLAN device's default) depends on.

A size fails when none of its copies came back in a round whose control probes all came back
on a path that has shown no loss so far, or else in two rounds where some did: plain loss then
looks like loss (``lossy``), not like a small MTU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

PLATEAUS = (9000, 8166, 4464, 4352, 2002, 1500, 1492, 1480, 1460, 1450, 1440, 1420, 1400,
            1380, 1350, 1300, 1280, 1006, 576)
CONTROL = "control"
SIZE = "size"
HOP = "hop"
FRAG = "frag"  # sent without DF: the router fragments it


@dataclass(frozen=True)
class Probe:
    id: int
    size: int
    kind: str
    ttl: int = 0  # 0: the default TTL


@dataclass
class _Sent:
    probe: Probe
    round: int
    answered: bool = False


@dataclass
class PmtuSearch:
    """One ordered pair's search. ``floor`` is the smallest size assumed to fit any path."""

    local_mtu: int
    family: int = 4
    copies: int = 3
    controls: int = 3
    width: int = 12
    timeout: float = 0.2
    max_rounds: int = 10
    max_ttl: int = 8
    control_size: int = 0
    _next_id: int = 1
    _round: int = 0
    _round_started: float = 0.0
    _phase: str = "idle"
    _sent: Dict[int, _Sent] = field(default_factory=dict)
    _passed: Set[int] = field(default_factory=set)
    _failed_once: Set[int] = field(default_factory=set)
    _failed: Set[int] = field(default_factory=set)
    lo: int = 0
    hi: int = 0
    ptb_mtu: Optional[int] = None
    ptb_from: Optional[str] = None
    local_limit: Optional[int] = None
    hops_small: Dict[int, str] = field(default_factory=dict)
    hops_large: Dict[int, str] = field(default_factory=dict)
    hop_dest_ttl: Optional[int] = None
    controls_sent: int = 0
    controls_answered: int = 0
    below_sent: int = 0
    below_lost: int = 0
    rounds_done: int = 0
    #: plain loss has shown on this path (a control lost, or only some copies of a size back)
    loss_seen: bool = False
    max_rtt: float = 0.0
    #: do IPv4 fragments of a full-size packet cross? None: not asked, or loss hid the answer
    fragments: Optional[bool] = None
    done: bool = False

    def __post_init__(self) -> None:
        self.hi = self.local_mtu + 1
        if not self.control_size:
            self.control_size = 128 if self.family == 4 else 256

    # -- driving ------------------------------------------------------------------------------
    def start(self, now: float) -> List[Probe]:
        self._phase = "search"
        first = [self.local_mtu] + [p for p in PLATEAUS if 1280 <= p < self.local_mtu]
        return self._new_round(now, first[:self.width])

    def deadline(self) -> float:
        """When the current round gives up waiting: ``timeout``, or 4x the slowest control
        round trip seen so far if that is longer (a busy machine answers late, not never)."""
        return self._round_started + max(self.timeout, 4 * self.max_rtt)

    def poll(self, now: float) -> List[Probe]:
        """Probes to send now; ``[]`` while the round waits (or when :attr:`done`)."""
        if self.done:
            return []
        waiting = [s for s in self._sent.values() if s.round == self._round and not s.answered]
        if waiting and now < self.deadline():
            return []
        return self._end_round(now)

    # -- events -------------------------------------------------------------------------------
    def on_echo(self, probe_id: int, now: float) -> None:
        s = self._sent.get(probe_id)
        if s is None or s.answered:
            return
        s.answered = True
        p = s.probe
        if p.kind == CONTROL:
            self.controls_answered += 1
            if s.round == self._round:
                self.max_rtt = max(self.max_rtt, now - self._round_started)
        elif p.kind == SIZE:
            self._passed.add(p.size)
            self.lo = max(self.lo, p.size)
            if p.size >= self.hi:  # a late echo: that size did pass after all
                self._update_hi()
        elif p.kind == HOP and (self.hop_dest_ttl is None or p.ttl < self.hop_dest_ttl):
            self.hop_dest_ttl = p.ttl

    def on_too_big(self, probe_id: int, mtu: int, offender: Optional[str], now: float) -> None:
        """An ICMP "fragmentation needed" / "packet too big" for a probe, naming ``mtu``."""
        s = self._sent.get(probe_id)
        if s is None or s.probe.kind == FRAG:  # (sent without DF: no router should say so)
            return
        s.answered = True
        if 68 <= mtu < s.probe.size:
            if self.ptb_mtu is None or mtu < self.ptb_mtu:
                self.ptb_mtu, self.ptb_from = mtu, offender
            self._update_hi()

    def on_local_limit(self, probe_id: int, mtu: int, now: float) -> None:
        """EMSGSIZE at send: our own interface takes at most ``mtu``."""
        s = self._sent.get(probe_id)
        if s is not None:
            s.answered = True
        if mtu > 0:
            self.local_limit = mtu if self.local_limit is None else min(self.local_limit, mtu)
            self._update_hi()

    def on_time_exceeded(self, probe_id: int, offender: str, now: float) -> None:
        s = self._sent.get(probe_id)
        if s is None or s.answered:
            return
        s.answered = True
        p = s.probe
        if p.kind == HOP:
            (self.hops_large if p.size > self.control_size else self.hops_small)[p.ttl] = offender

    # -- rounds -------------------------------------------------------------------------------
    def _new_round(self, now: float, sizes: List[int], hop_size: int = 0,
                   frag: bool = False) -> List[Probe]:
        self._round += 1
        self._round_started = now
        out: List[Probe] = []
        for _ in range(self.controls):
            out.append(self._probe(self.control_size, CONTROL))
        # On a path that loses packets, twice the copies: a size all of whose copies vanish is
        # then far likelier to be too big than unlucky.
        copies = self.copies * 2 if self.loss_seen else self.copies
        for size in sizes:
            for _ in range(copies):
                out.append(self._probe(size, SIZE))
        if hop_size:
            for ttl in range(1, self.max_ttl + 1):
                out.append(self._probe(hop_size, HOP, ttl))
                out.append(self._probe(self.control_size, HOP, ttl))
        if frag:
            for _ in range(self.copies):
                out.append(self._probe(self.local_mtu, FRAG))
        self.controls_sent += self.controls
        return out

    def _probe(self, size: int, kind: str, ttl: int = 0) -> Probe:
        p = Probe(self._next_id, size, kind, ttl)
        self._next_id += 1
        self._sent[p.id] = _Sent(p, self._round)
        return p

    def _end_round(self, now: float) -> List[Probe]:
        self.rounds_done += 1
        mine = [s for s in self._sent.values() if s.round == self._round]
        ctl = [s.answered for s in mine if s.probe.kind == CONTROL]
        controls_ok = any(ctl)
        clean = bool(ctl) and all(ctl)  # no plain loss this round: one failure is enough
        by_size: Dict[int, List[_Sent]] = {}
        for s in mine:
            if s.probe.kind == SIZE:
                by_size.setdefault(s.probe.size, []).append(s)
        # An MTU drops every copy of a size; loss drops some. Once loss has shown (here or in
        # an earlier round), one round in which a size's copies all vanished is not enough,
        # even if this round's controls happened to come back: at 30 % loss, all three copies
        # of a size go with all three controls through about one time in a hundred.
        got_of = {size: sum(1 for c in copies if c.answered) for size, copies in by_size.items()}
        if not clean or any(0 < got_of[size] < len(copies) for size, copies in by_size.items()):
            self.loss_seen = True
        for size, copies in by_size.items():
            got = got_of[size]
            if size <= self.lo:
                self.below_sent += len(copies)
                self.below_lost += len(copies) - got
            if got == 0 and controls_ok and size not in self._passed and size < self.hi:
                if ((clean and not self.loss_seen) or size in self._failed_once
                        or self.ptb_mtu is not None):
                    self._failed.add(size)
                    self._update_hi()
                else:
                    self._failed_once.add(size)
        frags = [s.answered for s in mine if s.probe.kind == FRAG]
        if frags:
            # one copy across is proof; none across is an answer only in a round without loss
            self.fragments = True if any(frags) else (False if clean else None)
        if self._phase == "hops" or self._round >= self.max_rounds:
            self.done = True
            return []
        if self.controls_answered == 0 and self._round >= 2:
            self.done = True  # nothing at all comes back: unreachable
            return []
        if self.lo + 1 >= self.hi:
            # a hop beyond this host is smaller than its own link: would fragments cross it?
            frag = (self.family == 4 and 0 < self.lo < self.local_mtu
                    and self.local_limit is None and self.hi <= self.local_mtu)
            if self.ptb_mtu is None and self.hi <= self.local_mtu and self.lo > 0:
                self._phase = "hops"
                return self._new_round(now, [], hop_size=self.hi, frag=frag)
            if frag:
                self._phase = "hops"  # the last round
                return self._new_round(now, [], frag=True)
            self.done = True
            return []
        return self._new_round(now, self._candidates())

    def _update_hi(self) -> None:
        """The smallest size known to fail above the largest that passed."""
        bounds = [s for s in self._failed if s > self.lo] + [self.local_mtu + 1]
        if self.ptb_mtu is not None:
            bounds.append(self.ptb_mtu + 1)
        if self.local_limit is not None:
            bounds.append(self.local_limit + 1)
        self.hi = min(bounds)

    def _candidates(self) -> List[int]:
        lo = max(self.lo, self.control_size)
        hi = self.hi
        picks: List[int] = sorted(self._failed_once & set(range(lo + 1, hi)))
        if self.ptb_mtu is not None and lo < self.ptb_mtu < hi:
            picks.append(self.ptb_mtu)
        for p in PLATEAUS:
            if lo < p < hi and len(picks) < self.width // 2:
                picks.append(p)
        n = self.width - len(picks)
        if n > 0 and hi - lo > 1:
            step = max(1, (hi - lo) // (n + 1))
            picks += list(range(lo + step, hi, step))[:n]
        return sorted(set(picks))

    # -- the answer ---------------------------------------------------------------------------
    def result(self) -> Dict[str, object]:
        # Nothing came back at all: not a control, not a size (a search decided in its first
        # round can end with every control lost and the sizes answered: that is loss).
        unreachable = self.controls_answered == 0 and self.lo == 0
        exact = self.lo + 1 >= self.hi
        pmtu = None if unreachable or self.lo == 0 else self.lo
        lost = self.controls_sent - self.controls_answered + self.below_lost
        sent = self.controls_sent + self.below_sent
        lossy = lost >= 2 and sent > 0 and lost / sent >= 0.05
        limited_here = (pmtu is not None and self.hi == self.local_mtu + 1) or (
            self.local_limit is not None and pmtu == self.local_limit)
        if unreachable:
            verdict = "unreachable"
        elif self.ptb_mtu is None and pmtu is not None and pmtu < self.local_mtu and exact:
            verdict = "blackhole"
        elif lossy or not exact:
            verdict = "lossy"
        elif limited_here and self.local_mtu < 1500:
            verdict = "local-limit"
        else:
            verdict = "ok"
        hop: Optional[Dict[str, object]] = None
        if verdict == "blackhole":
            ttl = max(self.hops_large) if self.hops_large else 0
            hop = {"ttl": ttl, "address": self.hops_large.get(ttl),
                   "next": self.hops_small.get(ttl + 1)}
        return {
            "verdict": verdict, "pmtu": pmtu, "exact": exact, "local_mtu": self.local_mtu,
            "ptb_mtu": self.ptb_mtu, "ptb_from": self.ptb_from, "hop": hop,
            "path_small": [self.hops_small[t] for t in sorted(self.hops_small)],
            "controls": [self.controls_sent, self.controls_answered],
            "lost_below_pmtu": [self.below_sent, self.below_lost], "rounds": self.rounds_done,
            "fragments": self.fragments,
        }

    def pending(self) -> List[Tuple[int, int]]:
        return [(s.probe.id, s.probe.size) for s in self._sent.values() if not s.answered]
