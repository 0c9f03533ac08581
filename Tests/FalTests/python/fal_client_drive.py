#!/usr/bin/env python3
"""Drives fal-sim with fal's official Python client (fal-client on PyPI), as a fal user would.

Usage: fal_client_drive.py BASE_URL KEY MODEL
The client's queue host is fal's (https://queue.fal.run); it is pointed at fal-sim by replacing
its URL prefix, nothing else. Prints one JSON object: what the client saw.
"""
import json
import sys

import fal_client
import fal_client.client as fal

base, key, model = sys.argv[1].rstrip("/") + "/", sys.argv[2], sys.argv[3]
fal.QUEUE_URL_FORMAT = base
client = fal_client.SyncClient(key=key)
seen = {"statuses": [], "logs": []}

# Submit with the options fal offers; poll without and with logs until it completes.
handle = client.submit(model, arguments={"prompt": "fal-client drives fal-sim"}, priority="low", start_timeout=60)
seen["request_id"] = handle.request_id
while True:
    for with_logs in (False, True):
        status = handle.status(with_logs=with_logs)
        name = type(status).__name__
        if not seen["statuses"] or seen["statuses"][-1] != name:
            seen["statuses"].append(name)
        if name == "Queued":
            seen["position"] = status.position
        else:
            seen["logs"].append({"asked": with_logs, "type": type(status.logs).__name__})
    if name == "Completed":
        break
seen["result"] = handle.get()
# The event iterator (the status stream) ends with Completed too.
seen["events"] = [type(event).__name__ for event in client.submit(model, arguments={"prompt": "again"}).iter_events(with_logs=True, interval=0.05)][-1:]
# Cancel right after a submit: the client accepts fal's answer.
client.submit(model, arguments={"prompt": "to cancel"}).cancel()
seen["cancel"] = "ok"
print(json.dumps(seen, sort_keys=True))
