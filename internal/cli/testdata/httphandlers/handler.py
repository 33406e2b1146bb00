#!/usr/bin/env python3
"""A fleet HTTP handler in Python, standard library only, for fleet's tests.

fleet POSTs each event in the CloudEvents HTTP binding (binary mode): ce-*
headers, the data as the body. The response decides: 2xx with the effects
format, 4xx (other than 408 and 429) permanent, 408, 429 and 5xx retried.

Event types (the data is {"quantity": N} where it matters):
  inventory.received  2xx: HINCRBY inv:{key} on_hand N, and the request's
                      fleet headers in inv:{key}:seen; result "received N"
  inventory.rejected  422 with a reason
  inventory.flaky     503 with Retry-After: 1 the first time, then 2xx
                      recording the gap between the two requests
  inventory.slow      2xx after 1.5 s
  inventory.stuck     the first request sleeps 3 s, later ones answer at once
  inventory.broken    2xx with an effect the format does not have
GET /count?id=ID answers how many requests event ID made.
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

lock = threading.Lock()
requests = {}  # ce-id -> [times]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        with lock:
            n = len(requests.get(q.get("id", [""])[0], []))
        self.answer(200, str(n).encode())

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ev_id, ev_type = self.headers["ce-id"], self.headers["ce-type"]
        # Fleet-Key is percent-encoded, as the ce-* values are.
        key = unquote(self.headers["Fleet-Key"])
        with lock:
            times = requests.setdefault(ev_id, [])
            times.append(time.monotonic())
            n = len(times)
        if ev_type == "inventory.received":
            qty = json.loads(data)["quantity"]
            seen = "inv:{%s}:seen" % key
            effects = [{"op": "HINCRBY", "key": "inv:{%s}" % key, "field": "on_hand", "delta": qty}]
            for h in ("Idempotency-Key", "Fleet-Fence", "Fleet-Attempt", "ce-source", "Content-Type", "Authorization"):
                effects.append({"op": "HSET", "key": seen, "field": h.lower(), "value": self.headers.get(h, "")})
            self.reply({"effects": effects, "result": "received %d" % qty})
        elif ev_type == "inventory.rejected":
            self.answer(422, b"no such sku")
        elif ev_type == "inventory.flaky":
            if n == 1:
                self.answer(503, b"warming up", {"Retry-After": "1"})
            else:
                gap = int((times[1] - times[0]) * 1000)
                self.reply({"effects": [{"op": "HSET", "key": "inv:{%s}:flaky" % key, "field": "gap_ms", "value": str(gap)}]})
        elif ev_type == "inventory.slow":
            time.sleep(1.5)
            self.reply({"effects": [{"op": "INCRBY", "key": "inv:{%s}:slow" % key, "delta": 1}]})
        elif ev_type == "inventory.stuck":
            if n == 1:
                time.sleep(3)
            self.reply({"effects": [{"op": "INCRBY", "key": "inv:{%s}:stuck" % key, "delta": 1}]})
        elif ev_type == "inventory.broken":
            self.reply({"effects": [{"op": "FLUSHALL", "key": "inv:{%s}" % key}]})
        else:
            self.answer(404, b"unknown type")

    def reply(self, body):
        self.answer(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()
