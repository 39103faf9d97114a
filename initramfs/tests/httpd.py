#!/usr/bin/env python3
"""Tiny HTTP server for the image boot test: GET serves files from DIR,
POST /ph* appends the body as one line to DIR/../phone-home.log. The first
POST is answered 503, so the test sees the rescue init retry."""
import http.server
import os
import sys

ADDR, PORT, ROOT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
LOG = os.path.join(os.path.dirname(os.path.abspath(ROOT)), "phone-home.log")
posts = {"n": 0}


class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=ROOT, **kw)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        posts["n"] += 1
        with open(LOG, "ab") as f:
            f.write(b"%d %s %s " % (posts["n"], self.path.encode(),
                                    self.headers.get("Content-Type", "").encode()))
            f.write(body.replace(b"\n", b" ") + b"\n")
        code = 503 if posts["n"] == 1 else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


http.server.ThreadingHTTPServer((ADDR, PORT), H).serve_forever()
