#!/usr/bin/env python3
"""A test Policy Server: Cloud Foundry's internal policy API over mutual TLS, as the reference
server offers it (TLS 1.2 only, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 only, client certificates
required). Serves GET /networking/v1/internal/policies[?id=A,B] from POLICIES_FILE (re-read on
every request, so a test changes policies by rewriting it). A file STATUS_FILE beside it, when
present, holds an HTTP status to answer instead (e.g. 500), or the word "garbage" for an unusable body.
usage: policy-server.py HOST PORT CERT KEY CA POLICIES_FILE"""
import http.server, json, os, ssl, sys, urllib.parse

host, port, cert, key, ca, policies_file = sys.argv[1], int(sys.argv[2]), *sys.argv[3:7]
status_file = policies_file + ".status"

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/networking/v1/internal/policies":
            return self.answer(404, b'{"error":"not found"}')
        if os.path.exists(status_file):
            text = open(status_file).read().strip()
            if text == "garbage":
                return self.answer(200, b'{"total_policies": 1, "policies": [{"source": {"id": "a"}}]}')
            return self.answer(int(text), b'{"error":"test"}')
        with open(policies_file) as f:
            document = json.load(f)
        ids = urllib.parse.parse_qs(url.query).get("id")
        policies = document["policies"]
        if ids:
            wanted = set(",".join(ids).split(","))
            policies = [p for p in policies if p["source"]["id"] in wanted or p["destination"]["id"] in wanted]
        self.answer(200, json.dumps({"total_policies": len(policies), "policies": policies}).encode())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.minimum_version = ssl.TLSVersion.TLSv1_2
context.maximum_version = ssl.TLSVersion.TLSv1_2
context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
context.load_cert_chain(cert, key)
context.load_verify_locations(ca)
context.verify_mode = ssl.CERT_REQUIRED
server = http.server.ThreadingHTTPServer((host, port), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
