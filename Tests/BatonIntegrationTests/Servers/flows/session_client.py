# The client of session_server.py for FlowTests: keeps about 8 sessions open, each on
# its own UDP socket (its own flow) for 1 to 4 s, pinging every 50 ms, and opens new
# ones as they end, until the file `stop` exists; then lets the open ones end and
# prints one JSON line. A session is broken when an answer says "unknown" or comes
# from another generation than its first. Unanswered datagrams are sent again after
# 1 s (loss on a busy machine is not what this measures); a session unanswered for
# 10 s counts as lost.
import json
import os
import random
import selectors
import socket
import sys
import time

port, stop = int(sys.argv[1]), sys.argv[2]
concurrent = 8
selector = selectors.DefaultSelector()
active, finished = [], []


class Session:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.start = time.monotonic()
        self.end = self.start + random.uniform(1, 4)
        self.generation = None
        self.answered_first = None
        self.last_answer = None
        self.number = 0
        self.pings = 0
        self.broken = None
        self.lost = False
        self.closed = None
        self.send(b"hello")
        selector.register(self.sock, selectors.EVENT_READ, self)

    def send(self, message):
        self.message = message
        self.sent = time.monotonic()
        self.awaiting = True
        try:
            self.sock.send(message)
        except OSError:
            pass

    def finish(self):
        selector.unregister(self.sock)
        self.sock.close()
        self.closed = time.monotonic()
        active.remove(self)
        finished.append(self)

    def answer(self, words):
        now = time.monotonic()
        if len(words) != 3 or not words[2].startswith(b"g"):
            return
        kind, number, generation = words[0], int(words[1]), words[2][1:].decode()
        if kind == b"hello" and self.generation is None:
            self.generation = generation
            self.answered_first = now
        elif self.generation is None:
            return
        elif generation != self.generation or kind == b"unknown":
            self.broken = f"{kind.decode()} {number} from generation {generation}, begun with {self.generation}"
            self.finish()
            return
        elif kind == b"pong" and number == self.number:
            self.pings += 1
        elif kind == b"bye" and self.message == b"bye":
            self.finish()
            return
        else:
            return
        self.awaiting = False
        self.last_answer = now

    def tick(self, now):
        if self.awaiting:
            if now - self.last_sent_or_answer() > 10:
                self.lost = True
                self.finish()
            elif now - self.sent > 1:
                self.send(self.message)
            return
        if now >= self.end:
            self.send(b"bye")
        elif now - self.sent >= 0.05:
            self.number += 1
            self.send(b"ping %d" % self.number)

    def last_sent_or_answer(self):
        return self.last_answer if self.last_answer is not None else self.start


while active or not os.path.exists(stop):
    now = time.monotonic()
    while len(active) < concurrent and not os.path.exists(stop):
        active.append(Session())
    for key, _ in selector.select(timeout=0.01):
        session = key.data
        try:
            data = session.sock.recv(2048)
        except OSError:
            continue
        if session in active:
            session.answer(data.split())
    now = time.monotonic()
    for session in list(active):
        if session in active:
            session.tick(now)

# A session straddled a reload when a newer generation answered another session's
# first datagram while it was open.
firsts = [(s.answered_first, int(s.generation)) for s in finished if s.answered_first and s.generation.isdigit()]
straddled = 0
for s in finished:
    if s.generation is None or not s.generation.isdigit():
        continue
    if any(g > int(s.generation) and s.answered_first < t < s.closed for t, g in firsts):
        straddled += 1
print(json.dumps({
    "sessions": len(finished),
    "completed": sum(1 for s in finished if s.broken is None and not s.lost),
    "broken": [s.broken for s in finished if s.broken],
    "lost": sum(1 for s in finished if s.lost),
    "pings": sum(s.pings for s in finished),
    "straddled": straddled,
    "generations": sorted({s.generation for s in finished if s.generation}),
}))
