"""Drives Levee's SQS API in the Query protocol (form-encoded requests,
XML answers), as older SDKs and third-party clients speak it.

Usage: query_sqs.py ADMIN_URL ADMIN_TOKEN. Exits non-zero with a message on
the first behaviour that differs from SQS's.
"""

import hashlib
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

url, token = sys.argv[1], sys.argv[2]
NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}


def check(cond, what, detail):
    if not cond:
        sys.exit(f"FAIL {what}: {detail!r}")


def call(params, at=None):
    """POSTs a Query request; returns (HTTP status, XML root)."""
    body = urllib.parse.urlencode({**params, "Version": "2012-11-05"}).encode()
    req = urllib.request.Request(at or url + "/", data=body, method="POST")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, ET.fromstring(r.read())
    except urllib.error.HTTPError as e:
        return e.code, ET.fromstring(e.read())


def text(root, path):
    node = root.find(path, NS)
    return None if node is None else node.text


status, root = call({"Action": "CreateQueue", "QueueName": "legacy", "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "40"})
check(status == 200 and root.tag == "{%s}CreateQueueResponse" % NS["sqs"], "CreateQueue", ET.tostring(root))
q = text(root, "sqs:CreateQueueResult/sqs:QueueUrl")
check(q and q.endswith("/000000000000/legacy"), "QueueUrl", q)
check(text(root, "sqs:ResponseMetadata/sqs:RequestId"), "RequestId", ET.tostring(root))

_, root = call({"Action": "GetQueueAttributes", "QueueUrl": q, "AttributeName.1": "VisibilityTimeout"})
attrs = {text(a, "sqs:Name"): text(a, "sqs:Value") for a in root.findall("sqs:GetQueueAttributesResult/sqs:Attribute", NS)}
check(attrs == {"VisibilityTimeout": "40"}, "GetQueueAttributes", attrs)

_, root = call({"Action": "SendMessage", "QueueUrl": q, "MessageBody": "hello & <goodbye>",
                "MessageAttribute.1.Name": "kind", "MessageAttribute.1.Value.DataType": "String",
                "MessageAttribute.1.Value.StringValue": "order"})
check(text(root, "sqs:SendMessageResult/sqs:MD5OfMessageBody") == hashlib.md5(b"hello & <goodbye>").hexdigest(), "SendMessage MD5", ET.tostring(root))
check(text(root, "sqs:SendMessageResult/sqs:MD5OfMessageAttributes"), "MD5OfMessageAttributes", ET.tostring(root))

entries = {}
for i in range(3):
    entries[f"SendMessageBatchRequestEntry.{i + 1}.Id"] = f"e{i}"
    entries[f"SendMessageBatchRequestEntry.{i + 1}.MessageBody"] = f"batch{i}"
_, root = call({"Action": "SendMessageBatch", "QueueUrl": q, **entries})
ok = root.findall("sqs:SendMessageBatchResult/sqs:SendMessageBatchResultEntry", NS)
check(sorted(text(e, "sqs:Id") for e in ok) == ["e0", "e1", "e2"], "SendMessageBatch", ET.tostring(root))

# Posted to the queue's own URL, the form need not name it.
_, root = call({"Action": "ReceiveMessage", "MaxNumberOfMessages": "10", "AttributeName.1": "All", "MessageAttributeName.1": "All"}, at=q)
messages = root.findall("sqs:ReceiveMessageResult/sqs:Message", NS)
bodies = sorted(text(m, "sqs:Body") for m in messages)
check(bodies == ["batch0", "batch1", "batch2", "hello & <goodbye>"], "ReceiveMessage", ET.tostring(root))
first = next(m for m in messages if text(m, "sqs:Body").startswith("hello"))
check(text(first, "sqs:MessageAttribute/sqs:Value/sqs:StringValue") == "order", "message attribute", ET.tostring(first))
sent = {text(a, "sqs:Name") for a in first.findall("sqs:Attribute", NS)}
check("SentTimestamp" in sent, "system attributes", sent)

status, _ = call({"Action": "DeleteMessage", "QueueUrl": q, "ReceiptHandle": text(first, "sqs:ReceiptHandle")})
check(status == 200, "DeleteMessage", status)

status, root = call({"Action": "GetQueueUrl", "QueueName": "nope"})
check(status == 400 and root.tag == "{%s}ErrorResponse" % NS["sqs"], "error document", ET.tostring(root))
check(text(root, "sqs:Error/sqs:Code") == "AWS.SimpleQueueService.NonExistentQueue", "error code", ET.tostring(root))
check(text(root, "sqs:Error/sqs:Message") == "The specified queue does not exist for this wsdl version.", "error text (the Query protocol's own words)", ET.tostring(root))
check(text(root, "sqs:Error/sqs:Type") == "Sender", "error type", ET.tostring(root))

status, root = call({"QueueName": "no action"})
check(status == 400 and text(root, "sqs:Error/sqs:Code") == "MissingAction", "no action", ET.tostring(root))

_, root = call({"Action": "ListQueues"})
check(q in [u.text for u in root.findall("sqs:ListQueuesResult/sqs:QueueUrl", NS)], "ListQueues", ET.tostring(root))
status, _ = call({"Action": "DeleteQueue", "QueueUrl": q})
check(status == 200, "DeleteQueue", status)
print("ok")
