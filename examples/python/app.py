"""An unmodified Lambda handler, run by the real awslambdaric client."""

import json
import os
import socket


def handler(event, context):
    if "Records" in event:
        return sqs_batch(event)
    action = (event.get("queryStringParameters") or {}).get("action") or event.get("action")
    if action == "error":
        raise ValueError("bad input on purpose")
    if action == "flaky" and os.path.exists(os.environ.get("FLAKY_FILE", "/nonexistent")):
        raise RuntimeError("failing because FLAKY_FILE exists")
    if action == "notfound":
        return {"statusCode": 404, "headers": {"content-type": "text/plain"}, "body": "no such thing"}
    if action == "vary":
        language = (event.get("headers") or {}).get("accept-language", "none")
        return {
            "statusCode": 200,
            "headers": {"content-type": "text/plain", "vary": "accept-language"},
            "body": f"language={language}",
        }
    if action == "context":
        return {
            "request_id": context.aws_request_id,
            "function_name": context.function_name,
            "memory": context.memory_limit_in_mb,
            "arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "cwd": os.getcwd(),
            "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
            "client_context": getattr(context.client_context, "custom", None),
        }
    name = (event.get("pathParameters") or {}).get("name", "world")
    if "rawPath" in event:
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps({"message": f"{os.environ.get('GREETING', 'Hello')}, {name}!", "method": event["requestContext"]["http"]["method"]}),
        }
    return {"echo": event}


def sqs_batch(event):
    """An SQS batch: records whose body contains "fail" are reported as
    failed (partial batch response); the rest succeed. Each body is sent, one
    per line in the batch's order ("failed:" before a failed one), to the TCP
    address $PROCESSED_ADDR, if set, so tests can count deliveries and check
    their order (an isolated instance reaches it through `forward`). The
    batch is answered only once the collector has closed its side: it has
    the lines by then, so the order it saw them in is the order they were
    processed in, not the order their connections happened to be read."""
    failures = []
    lines = []
    for record in event["Records"]:
        if "fail" in record["body"]:
            failures.append({"itemIdentifier": record["messageId"]})
            lines.append("failed:" + record["body"])
        else:
            lines.append(record["body"])
    addr = os.environ.get("PROCESSED_ADDR")
    if addr and lines:
        host, port = addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as out:
            out.sendall("".join(line + "\n" for line in lines).encode())
            out.shutdown(socket.SHUT_WR)
            while out.recv(64):
                pass
    return {"batchItemFailures": failures}
