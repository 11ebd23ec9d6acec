"""Accepts one HTTP request on 127.0.0.1:PORT, prints its X-Palisade-Assertion, answers 200.

Run inside a pod's network namespace (nsenter) in place of the agent runtime, to see what
Palisade forwards upstream. Exits after one request or after TIMEOUT seconds.
"""

import socket
import sys

port, timeout = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
srv.settimeout(timeout)
print("listening", flush=True)
conn, _ = srv.accept()
conn.settimeout(timeout)
head = b""
while b"\r\n\r\n" not in head:
    chunk = conn.recv(65536)
    if not chunk:
        break
    head += chunk
for line in head.decode("latin-1").split("\r\n"):
    name, _, value = line.partition(":")
    if name.strip().lower() == "x-palisade-assertion":
        print(value.strip(), flush=True)
conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
conn.close()
