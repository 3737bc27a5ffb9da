# A UDP session server for FlowTests: it keeps state per flow (remote address and
# port), so a datagram of a session that reaches another generation is answered
# "unknown". Serves the socket Baton passes at fd 3 and answers with its generation.
# On its drain signal it keeps serving its sessions, and exits once it has none left
# or has heard nothing for 2 s.
import os
import signal
import socket
import time

sock = socket.socket(fileno=3)
generation = os.environ.get("BATON_GENERATION", "?").encode()
sessions = {}
draining = False


def drain(*_):
    global draining
    draining = True


signal.signal(signal.SIGTERM, drain)
address = os.environ.get("NOTIFY_SOCKET")
if address:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.connect("\0" + address[1:] if address.startswith("@") else address)
    notify.send(b"READY=1")
    notify.close()
sock.settimeout(0.1)
heard = time.monotonic()
while not (draining and (not sessions or time.monotonic() - heard > 2)):
    try:
        data, peer = sock.recvfrom(2048)
    except (socket.timeout, InterruptedError):
        continue
    heard = time.monotonic()
    words = data.split()
    if not words:
        continue
    if words[0] == b"hello":
        sessions[peer] = 0
        answer = b"hello 0"
    elif words[0] == b"ping" and len(words) == 2:
        number = int(words[1])
        last = sessions.get(peer)
        # A ping sent again (its answer was late) is answered again.
        if last is not None and number in (last, last + 1):
            sessions[peer] = number
            answer = b"pong %d" % number
        else:
            answer = b"unknown %d" % number
    elif words[0] == b"bye":
        sessions.pop(peer, None)
        answer = b"bye 0"
    else:
        continue
    sock.sendto(answer + b" g" + generation, peer)
