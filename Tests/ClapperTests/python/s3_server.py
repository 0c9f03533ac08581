"""A real S3-speaking server on loopback for the media custody tests: moto (from PyPI) in
server mode with its authentication on, so every request's SigV4 signature is checked, behind
a small proxy that can answer the first N writes 503 SlowDown.

Prints one JSON line: {"port", "keyId", "secret", "bucket"} (port is the proxy's); ends when
stdin closes. GET /_objects on the proxy lists the bucket (key, size, contentType, md5) through
boto3; GET /_object?key=K answers an object's bytes; GET /_log every request it passed or refused (with its body's size).
"""
import argparse
import hashlib
import http.client
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--slowdown", type=int, default=0, help="answer this many writes 503 SlowDown first")
parser.add_argument("--min-part-size", type=int, default=1024)
args = parser.parse_args()

# Before moto is imported: the first 3 calls (the IAM setup below) go unchecked, then every
# request is authenticated; parts may be as small as --min-part-size.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
os.environ["S3_UPLOAD_PART_MIN_SIZE"] = str(args.min_part_size)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
moto.start()
moto_port = moto._server.server_port
endpoint = f"http://127.0.0.1:{moto_port}"

setup = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **setup)
iam.create_user(UserName="clapper")
iam.put_user_policy(UserName="clapper", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="clapper")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
bucket = "clapper-media"
s3.create_bucket(Bucket=bucket)

slowdowns = [args.slowdown]
lock = threading.Lock()
log = []  # every request the proxy saw: method, path, status
SLOWDOWN = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.command in ("PUT", "POST"):
            with lock:
                refuse = slowdowns[0] > 0
                if refuse:
                    slowdowns[0] -= 1
            if refuse:
                with lock:
                    log.append({"method": self.command, "path": self.path, "status": 503, "bytes": length})
                return self.answer(503, SLOWDOWN, [("Content-Type", "application/xml")])
        connection = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
        connection.request(self.command, self.path, body=body, headers=headers)
        reply = connection.getresponse()
        data = reply.read()
        passed = [(k, v) for k, v in reply.getheaders() if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        connection.close()
        with lock:
            log.append({"method": self.command, "path": self.path, "status": reply.status, "bytes": length})
        self.answer(reply.status, data, passed)

    def do_GET(self):
        if self.path == "/_objects":
            objects = []
            for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                head = s3.head_object(Bucket=bucket, Key=item["Key"])
                data = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                objects.append({"key": item["Key"], "size": item["Size"], "contentType": head.get("ContentType"),
                                "md5": hashlib.md5(data).hexdigest()})
            return self.answer(200, json.dumps(objects).encode(), [("Content-Type", "application/json")])
        if self.path == "/_log":
            with lock:
                return self.answer(200, json.dumps(log).encode(), [("Content-Type", "application/json")])
        if self.path.startswith("/_object?key="):
            from urllib.parse import unquote
            data = s3.get_object(Bucket=bucket, Key=unquote(self.path[len("/_object?key="):]))["Body"].read()
            return self.answer(200, data)
        self.forward()

    def do_PUT(self):
        self.forward()

    def do_POST(self):
        self.forward()

    def do_HEAD(self):
        self.forward()

    def do_DELETE(self):
        self.forward()


proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
threading.Thread(target=proxy.serve_forever, daemon=True).start()
print(json.dumps({"port": proxy.server_address[1], "keyId": key["AccessKeyId"], "secret": key["SecretAccessKey"], "bucket": bucket}), flush=True)
sys.stdin.read()
proxy.shutdown()
moto.stop()
