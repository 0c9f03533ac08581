"""An operator's endpoint for the outbound events test: checks every delivery with the
standardwebhooks package from PyPI (the Standard Webhooks reference verifier).

POST /_secret {"path": "/ok", "secret": "whsec_…"} sets the secret deliveries to that path are
verified with. POST /ok answers 204; POST /flaky answers 500 to the first two tries of each
webhook-id, then 204; POST /down answers 500 until POST /_up; POST /redirect answers 307 to /ok. GET /_received lists every delivery seen:
{path, id, verified, type, jobId, attempt}. Prints its port first; ends when stdin closes.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

state = {"secrets": {}, "received": [], "tries": {}, "up": False}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with lock:
            body = json.dumps(state["received"]).encode()
        self.answer(200, body, [("Content-Type", "application/json")])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_secret":
            setting = json.loads(body)
            with lock:
                state["secrets"][setting["path"]] = setting["secret"]
            return self.answer(204)
        if self.path == "/_up":
            with lock:
                state["up"] = True
            return self.answer(204)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified, kind, job, data = False, None, None, {}
        try:
            payload = Webhook(state["secrets"].get(self.path, "whsec_" + "A" * 32)).verify(body, headers)
            verified = True
            data = payload.get("data", {})
            kind, job = payload.get("type"), data.get("jobId")
        except (WebhookVerificationError, Exception) as error:  # noqa: BLE001
            kind = f"refused: {error}"
        hook_id = headers.get("webhook-id")
        with lock:
            tries = state["tries"][(self.path, hook_id)] = state["tries"].get((self.path, hook_id), 0) + 1
            state["received"].append({"path": self.path, "id": hook_id, "verified": verified, "type": kind, "jobId": job, "attempt": tries,
                                      "userId": data.get("userId"), "provider": data.get("provider"), "model": data.get("model"),
                                      "prompt": data.get("parameters", {}).get("prompt")})
        if self.path == "/ok":
            return self.answer(204)
        if self.path == "/flaky":
            return self.answer(500 if tries <= 2 else 204)
        if self.path == "/redirect":
            return self.answer(307, b"", [("Location", "/ok")])
        if self.path == "/down" and state["up"]:
            return self.answer(204)
        return self.answer(500)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()
