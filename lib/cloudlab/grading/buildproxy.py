"""The build jail's way out: a forwarding HTTP proxy that connects only to an allow-list.

It runs inside the jail's proxy container (standard library only: the container has just
the base image), started by :class:`cloudlab.grading.confine.Jail` as
``python -c <this file> '["host:port", ...]' PORT``. ``CONNECT host:port`` (HTTPS) and
absolute ``http://host:port/...`` requests go through when ``host:port`` is on the list;
a name that resolves to a loopback or link-local address (169.254.169.254) is refused
unless the list names that address itself. One line per connection on stdout:
``allowed host:port`` or ``refused <why>``.

>>> target("CONNECT", "pypi.example:443")
('pypi.example', '443', '')
>>> target("GET", "http://[::1]:8080/simple/")
('::1', '8080', '/simple/')
>>> local("169.254.169.254"), local("127.0.0.1"), local("203.0.113.7")
(True, True, False)
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import sys


def local(ip: str) -> bool:
    """Whether an address is this machine's or its link's (never reached through a name)."""
    a = ipaddress.ip_address(ip)
    return a.is_loopback or a.is_link_local or a.is_multicast or a.is_unspecified \
        or a.is_reserved


def target(method: str, text: str) -> tuple[str, str, str]:
    """(host, port, path) of a proxy request's target; ValueError when it is not one."""
    if method == "CONNECT":
        host, _, port = text.rpartition(":")
        path = ""
    elif text.startswith("http://"):
        hostport, _, rest = text[7:].partition("/")
        path = "/" + rest
        if hostport.endswith("]") or ":" not in hostport:
            host, port = hostport, "80"
        else:
            host, _, port = hostport.rpartition(":")
    else:
        raise ValueError("not a proxy request")
    if not host or not port.isdigit():
        raise ValueError(f"no host:port in {text!r}")
    return host.strip("[]").lower(), port, path


async def _pipe(reader, writer) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()


async def _refuse(writer, code: int, why: str) -> None:
    writer.write(f"HTTP/1.1 {code} {why}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                 .encode())
    await writer.drain()
    writer.close()
    print(f"refused {why}", flush=True)


async def _handle(allow: set[str], reader, writer) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        line, _, rest = head.partition(b"\r\n")
        method, text, version = line.decode("latin-1").split(" ", 2)
        host, port, path = target(method, text)
    except Exception as exc:
        return await _refuse(writer, 400, f"bad request: {type(exc).__name__}")
    if f"{host}:{port}" not in allow:
        return await _refuse(writer, 403, f"{host}:{port} is not on the allow-list")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, int(port),
                                                              type=socket.SOCK_STREAM)
        ips = [info[4][0] for info in infos]
        try:
            literal = bool(ipaddress.ip_address(host))
        except ValueError:
            literal = False
        if not literal and any(local(ip) for ip in ips):
            return await _refuse(writer, 403, f"{host} resolves to a local address")
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(ips[0], int(port)), 15)
    except Exception as exc:
        return await _refuse(writer, 502, f"cannot reach {host}:{port}: {type(exc).__name__}")
    if method == "CONNECT":
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
    else:  # origin-form towards the server, the rest of the request as it came
        up_writer.write(f"{method} {path} {version}\r\n".encode() + rest)
    print(f"allowed {host}:{port}", flush=True)
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def serve(allow: set[str], port: int) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(allow, r, w), "0.0.0.0", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve({a.lower() for a in json.loads(sys.argv[1])}, int(sys.argv[2])))
