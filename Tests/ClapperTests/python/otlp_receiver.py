"""A small OTLP/HTTP trace receiver on loopback, for the tracing test.

POST /v1/traces takes an ExportTraceServiceRequest (protobuf, gzip allowed), decoded with
opentelemetry-proto from PyPI; GET /spans answers every span received so far as JSON.
Prints the port it listens on as its first line; ends when stdin closes.
"""
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

spans = []
lock = threading.Lock()


def value(any_value):
    """An attribute's value; booleans as "true"/"false" (JSON's true reads as 1 in Swift)."""
    kind = any_value.WhichOneof("value")
    if kind == "bool_value":
        return "true" if any_value.bool_value else "false"
    return getattr(any_value, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append({
                        "service": resource.get("service.name"),
                        "name": span.name,
                        "kind": span.kind,
                        "traceId": span.trace_id.hex(),
                        "spanId": span.span_id.hex(),
                        "parentSpanId": span.parent_span_id.hex(),
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                        "links": [{"traceId": l.trace_id.hex(), "spanId": l.span_id.hex()} for l in span.links],
                        "status": span.status.code,
                    })
        with lock:
            spans.extend(received)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self):
        with lock:
            reply = json.dumps(spans).encode()
        self.send_response(200 if self.path == "/spans" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()
