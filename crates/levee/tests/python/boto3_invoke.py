"""Drives Levee's Invoke API with an unmodified boto3 Lambda client.

Usage: boto3_invoke.py ADMIN_URL ADMIN_TOKEN. Exits non-zero with a message on the first
behaviour that differs from Lambda's; prints the Event invocation's request id
on success so the caller can find its log lines.
"""

import base64
import json
import sys

import boto3
from botocore.config import Config

url, token = sys.argv[1], sys.argv[2]
client = boto3.client(
    "lambda",
    endpoint_url=url,
    region_name="us-east-1",
    # Levee's admin listener takes its admin token as the access key id.
    aws_access_key_id=token,
    aws_secret_access_key="unused",
    # Lambda clients retry 429s silently by default; we want to see them.
    config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60),
)


def check(cond, what, detail):
    if not cond:
        sys.exit(f"FAIL {what}: {detail!r}")


r = client.invoke(FunctionName="hello", Payload=json.dumps({"action": "pid"}))
body = json.loads(r["Payload"].read())
check(r["StatusCode"] == 200, "sync status", r)
check("FunctionError" not in r, "no function error", r)
check(r["ExecutedVersion"] == "$LATEST", "executed version", r)
check(isinstance(body.get("pid"), int), "payload", body)
check(body["request_id"] == r["ResponseMetadata"]["RequestId"], "request id", (body, r["ResponseMetadata"]))

arn = "arn:aws:lambda:us-east-1:000000000000:function:hello"
r = client.invoke(FunctionName=arn, Qualifier="$LATEST", Payload=b'{"a": [1, 2]}')
check(json.loads(r["Payload"].read()) == {"a": [1, 2]}, "ARN + qualifier echo", r)

r = client.invoke(FunctionName="hello")
check(json.loads(r["Payload"].read()) == {}, "empty payload is {}", r)

r = client.invoke(FunctionName="hello", Payload=json.dumps({"action": "error"}))
doc = json.loads(r["Payload"].read())
check(r["StatusCode"] == 200 and r.get("FunctionError") == "Unhandled", "function error", r)
check(doc["errorMessage"] == "something went wrong on purpose", "error document", doc)

r = client.invoke(FunctionName="hello", Payload=json.dumps({"action": "crash"}))
doc = json.loads(r["Payload"].read())
check(r.get("FunctionError") == "Unhandled" and doc["errorType"] == "Runtime.ExitError", "crash", doc)

r = client.invoke(FunctionName="hello", Payload=json.dumps({"action": "sleep", "ms": 3000}))
doc = json.loads(r["Payload"].read())
check(r.get("FunctionError") == "Unhandled", "timeout flagged", r)
check(doc["errorMessage"].startswith("Task timed out after 1.00 seconds"), "timeout message", doc)

ctx = base64.b64encode(json.dumps({"custom": {"tenant": "t1"}}).encode()).decode()
r = client.invoke(FunctionName="py", ClientContext=ctx, Payload=json.dumps({"action": "context"}))
doc = json.loads(r["Payload"].read())
check(doc.get("client_context") == {"tenant": "t1"}, "client context reaches awslambdaric", doc)
check(doc["function_name"] == "py", "python context", doc)

r = client.invoke(FunctionName="py", Payload=json.dumps({"action": "error"}))
doc = json.loads(r["Payload"].read())
check(r.get("FunctionError") == "Unhandled" and doc["errorType"] == "ValueError", "python error", doc)

r = client.invoke(FunctionName="hello", InvocationType="DryRun")
check(r["StatusCode"] == 204, "DryRun", r)


def expect_error(code, **kwargs):
    try:
        client.invoke(**kwargs)
    except client.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        check(got == code, f"error code for {kwargs.get('FunctionName')}", e.response)
        return e.response
    sys.exit(f"FAIL expected {code} for {kwargs}")


expect_error("ResourceNotFoundException", FunctionName="nope")
expect_error("ResourceNotFoundException", FunctionName="hello", Qualifier="prod")
resp = expect_error("TooManyRequestsException", FunctionName="off")
check(resp["ResponseMetadata"]["HTTPStatusCode"] == 429, "throttle status", resp)
expect_error("InvalidRequestContentException", FunctionName="hello", Payload=b"not json")
expect_error("RequestTooLargeException", FunctionName="hello", Payload=b'"' + b"x" * 7_000_000 + b'"')
expect_error("RequestTooLargeException", FunctionName="hello", InvocationType="Event", Payload=b'"' + b"x" * 2_000_000 + b'"')

stranger = boto3.client(
    "lambda",
    endpoint_url=url,
    region_name="us-east-1",
    aws_access_key_id="not-the-token",
    aws_secret_access_key="x",
    config=Config(retries={"max_attempts": 1, "mode": "standard"}),
)
try:
    stranger.invoke(FunctionName="hello")
    sys.exit("FAIL a client without the admin token could invoke")
except stranger.exceptions.ClientError as e:
    check(e.response["ResponseMetadata"]["HTTPStatusCode"] == 401, "unauthenticated invoke refused", e.response)

r = client.invoke(FunctionName="hello", InvocationType="Event", Payload=json.dumps({"action": "log"}))
check(r["StatusCode"] == 202, "Event status", r)
print(r["ResponseMetadata"]["RequestId"])
