# The QUIC client (aioquic) for FlowTests.
#   quic_client.py probe PORT          one connection, one line: prints the generation
#                                      that answered
#   quic_client.py run PORT STOP COUNT MIGRATING [reconnect]
#                                      COUNT connections, each pinging on one stream every
#                                      50 ms until the file STOP exists (MIGRATING of them
#                                      rebind to a new local port every 1.5 s), and
#                                      meanwhile one handshake after another with a
#                                      ClientHello too large for one Initial packet; prints
#                                      one JSON line. With `reconnect` (baton-bench), a
#                                      broken connection is counted and opened anew.
# A connection is broken when it fails, a ping goes unanswered for 15 s, or an answer
# comes from another generation than its first.
import asyncio
import json
import os
import ssl
import sys
import time

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

mode, port = sys.argv[1], int(sys.argv[2])


def configuration(large=False):
    configuration = QuicConfiguration(is_client=True, alpn_protocols=["echo"])
    configuration.verify_mode = ssl.CERT_NONE
    if large:
        # About 2 kB of ALPN names before the real one: the ClientHello needs two Initials.
        configuration.alpn_protocols = [f"{index:02d}" + "x" * 240 for index in range(8)] + ["echo"]
    return configuration


async def exchange(reader, writer, line):
    writer.write(line + b"\n")
    answer = await asyncio.wait_for(reader.readline(), 15)
    words = answer.split()
    if len(words) != 3 or words[:2] != line.split() or not words[2].startswith(b"g"):
        raise RuntimeError(f"answer {answer!r} to {line!r}")
    return words[2][1:].decode()


async def probe():
    async with connect("127.0.0.1", port, configuration=configuration()) as client:
        reader, writer = await client.create_stream()
        print(await exchange(reader, writer, b"probe 1"))


async def rebind(client):
    # Migration: the same connection from a new local port, with a new connection ID.
    loop = asyncio.get_running_loop()
    old = client._transport
    await loop.create_datagram_endpoint(lambda: client, local_addr=("::", 0))
    client.change_connection_id()
    old.close()


connected = []
connections = int(sys.argv[4]) if len(sys.argv) > 4 else 0


def stopping(stop):
    return os.path.exists(stop)


async def stopped(stop):
    while not stopping(stop):
        await asyncio.sleep(0.1)


async def session(index, stop, migrate):
    result = {"generation": None, "answered": 0, "migrations": 0, "broken": None}
    try:
        async with connect("127.0.0.1", port, configuration=configuration()) as client:
            reader, writer = await client.create_stream()
            rebound = time.monotonic()
            number = 0
            while not stopping(stop):
                number += 1
                generation = await exchange(reader, writer, b"ping %d" % number)
                if result["generation"] is None:
                    result["generation"] = generation
                    connected.append(index)
                    if len(connected) == connections:
                        # Every connection answered once: the test's reloads may begin.
                        open(stop + ".connected", "w").close()
                elif generation != result["generation"]:
                    raise RuntimeError(f"ping {number} answered by generation {generation}")
                result["answered"] += 1
                if migrate and time.monotonic() - rebound > 1.5:
                    await rebind(client)
                    rebound = time.monotonic()
                    result["migrations"] += 1
                await asyncio.sleep(0.05)
    except Exception as error:
        result["broken"] = f"connection {index} (generation {result['generation']}): {error!r}"
    return result


async def handshakes(stop):
    done, failed = 0, []
    while not stopping(stop):
        try:
            async def one():
                async with connect("127.0.0.1", port, configuration=configuration(large=True)) as client:
                    reader, writer = await client.create_stream()
                    await exchange(reader, writer, b"hello 1")
            await asyncio.wait_for(one(), 20)
            done += 1
        except Exception as error:
            failed.append(repr(error))
    return done, failed


async def reconnecting(index, stop, migrating):
    broken, result = [], None
    while not stopping(stop):
        result = await session(index, stop, migrating)
        if result["broken"]:
            broken.append(result["broken"])
    result = result or {"generation": None, "answered": 0, "migrations": 0}
    result["broken"] = broken
    return result


async def run(stop, count, migrating, reconnect):
    if reconnect:
        sessions = [asyncio.ensure_future(reconnecting(index, stop, index < migrating)) for index in range(count)]
        await stopped(stop)
        results = await asyncio.gather(*sessions)
        print(json.dumps({"broken": [b for r in results for b in r["broken"]], "pings": sum(r["answered"] for r in results)}))
        return
    sessions = [asyncio.ensure_future(session(index, stop, index < migrating)) for index in range(count)]
    await asyncio.sleep(0.5)
    done, failed = await handshakes(stop)
    results = await asyncio.gather(*sessions)
    print(json.dumps({
        "connections": len(results),
        "broken": [r["broken"] for r in results if r["broken"]],
        "pings": sum(r["answered"] for r in results),
        "generations": sorted({r["generation"] for r in results if r["generation"]}),
        "migrations": sum(r["migrations"] for r in results),
        "largeHandshakes": done,
        "failedHandshakes": failed,
    }))


if mode == "probe":
    asyncio.run(asyncio.wait_for(probe(), 20))
else:
    asyncio.run(run(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:] == ["reconnect"]))
