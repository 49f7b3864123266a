"""Docker HEALTHCHECK: exit 0 when this replica's /healthz answers 200 (no curl in the image).

Docker runs it every 5 s in every replica, so it imports nothing but `socket`: urllib
would pull in ssl, email and http.client, and starting Python with them cost as much CPU
as the rest of the check (docs/performance.md).
"""

import socket
import sys

try:
    with socket.create_connection(("127.0.0.1", 8000), timeout=2) as connection:
        connection.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer and len(answer) < 1024:
            chunk = connection.recv(1024)
            if not chunk:
                break
            answer += chunk
except OSError as error:
    print(f"unhealthy: {error}", file=sys.stderr)
    sys.exit(1)

status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
healthy = status_line.split(" ")[1:2] == ["200"]
if not healthy:
    print(f"unhealthy: {status_line or 'no answer'}", file=sys.stderr)
sys.exit(0 if healthy else 1)
