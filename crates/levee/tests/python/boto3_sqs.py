"""Drives Levee's SQS API with an unmodified boto3 SQS client.

Usage: boto3_sqs.py ADMIN_URL ADMIN_TOKEN. Exits non-zero with a message on
the first behaviour that differs from SQS's.
"""

import hashlib
import json
import struct
import sys

import boto3
from botocore.config import Config

url, token = sys.argv[1], sys.argv[2]
sqs = boto3.client(
    "sqs",
    endpoint_url=url,
    region_name="us-east-1",
    aws_access_key_id=token,
    aws_secret_access_key="unused",
    config=Config(retries={"max_attempts": 1, "mode": "standard"}),
)


def check(cond, what, detail):
    if not cond:
        sys.exit(f"FAIL {what}: {detail!r}")


def attributes_md5(attrs):
    """MD5OfMessageAttributes as SQS computes it (names sorted; each name,
    data type and value length-prefixed, with a 1 (string) or 2 (binary)
    transport byte before the value)."""
    out = b""
    for name in sorted(attrs):
        a = attrs[name]
        for part in (name.encode(), a["DataType"].encode()):
            out += struct.pack(">I", len(part)) + part
        if "StringValue" in a:
            v = a["StringValue"].encode()
            out += b"\x01" + struct.pack(">I", len(v)) + v
        else:
            v = a["BinaryValue"]
            out += b"\x02" + struct.pack(">I", len(v)) + v
    return hashlib.md5(out).hexdigest()


q = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
check(q.endswith("/000000000000/jobs"), "queue url", q)
check(sqs.get_queue_url(QueueName="jobs")["QueueUrl"] == q, "get_queue_url", None)
check(q in sqs.list_queues().get("QueueUrls", []), "list_queues", sqs.list_queues())

attrs = {"kind": {"DataType": "String", "StringValue": "order"}, "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}
sent = sqs.send_message(QueueUrl=q, MessageBody="hello", MessageAttributes=attrs)
check(sent["MD5OfMessageBody"] == hashlib.md5(b"hello").hexdigest(), "MD5OfMessageBody", sent)
check(sent["MD5OfMessageAttributes"] == attributes_md5(attrs), "MD5OfMessageAttributes", sent)

batch = sqs.send_message_batch(QueueUrl=q, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])
check(len(batch.get("Successful", [])) == 10 and batch.get("Failed", []) == [], "send_message_batch", batch)

got = []
for _ in range(10):
    r = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"], AttributeNames=["All"])
    got += r.get("Messages", [])
    if len(got) >= 11:
        break
check(len(got) == 11, "received every message once", len(got))
hello = next(m for m in got if m["Body"] == "hello")
check(hello["MD5OfBody"] == hashlib.md5(b"hello").hexdigest(), "MD5OfBody", hello)
check(hello["MessageAttributes"]["kind"]["StringValue"] == "order", "attributes", hello)
check(hello["Attributes"]["ApproximateReceiveCount"] == "1", "receive count", hello)
check(sqs.receive_message(QueueUrl=q, WaitTimeSeconds=1).get("Messages", []) == [], "in flight: invisible", None)

sqs.change_message_visibility(QueueUrl=q, ReceiptHandle=hello["ReceiptHandle"], VisibilityTimeout=0)
again = sqs.receive_message(QueueUrl=q, WaitTimeSeconds=2, AttributeNames=["All"]).get("Messages", [])
check(len(again) == 1 and again[0]["Body"] == "hello", "visible again after ChangeMessageVisibility 0", again)
check(again[0]["Attributes"]["ApproximateReceiveCount"] == "2", "receive count grows", again)

deleted = sqs.delete_message_batch(QueueUrl=q, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got) if m["Body"] != "hello"])
check(len(deleted.get("Successful", [])) == 10, "delete_message_batch", deleted)
sqs.delete_message(QueueUrl=q, ReceiptHandle=again[0]["ReceiptHandle"])
n = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
check(n["ApproximateNumberOfMessages"] == "0" and n["ApproximateNumberOfMessagesNotVisible"] == "0", "empty", n)


def expect(code, call, **kwargs):
    try:
        call(**kwargs)
    except sqs.exceptions.ClientError as e:
        check(e.response["Error"]["Code"] == code or code in str(e.response), f"error {code}", e.response)
        return
    sys.exit(f"FAIL expected {code}")


try:
    sqs.get_queue_url(QueueName="nope")
    sys.exit("FAIL missing queue found")
except sqs.exceptions.QueueDoesNotExist as e:
    # AWS's own words: code that matches on them must keep working.
    check(e.response["Error"]["Message"] == "The specified queue does not exist.", "NonExistentQueue text", e.response)
try:
    sqs.delete_message_batch(QueueUrl=q, Entries=[])
    sys.exit("FAIL empty DeleteMessageBatch accepted")
except sqs.exceptions.ClientError as e:
    check(e.response["Error"]["Message"] == "There should be at least one DeleteMessageBatchRequestEntry in the request.", "EmptyBatchRequest text", e.response)
try:
    sqs.send_message_batch(QueueUrl=q, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)])
    sys.exit("FAIL 11 entries accepted")
except sqs.exceptions.ClientError as e:
    check(e.response["Error"]["Message"] == "Maximum number of entries per request are 10. You have sent 11.", "TooManyEntries text", e.response)
try:
    sqs.delete_message(QueueUrl=q, ReceiptHandle="garbage")
    sys.exit("FAIL a made-up receipt handle accepted")
except sqs.exceptions.ClientError as e:
    check(e.response["Error"]["Code"] == "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid code", e.response)
    check(e.response["Error"]["Message"] == 'The input receipt handle "garbage" is not a valid receipt handle.', "ReceiptHandleIsInvalid text", e.response)
for bad_number in ["NaN", "inf", "-Infinity", "1e400", "1e-200", "1" * 39]:
    expect("InvalidParameterValue", sqs.send_message, QueueUrl=q, MessageBody="x",
           MessageAttributes={"n": {"DataType": "Number", "StringValue": bad_number}})
# Attribute and visibility errors in AWS's words.
for call, kwargs, code, text in [
    (sqs.set_queue_attributes, {"Attributes": {"VisibilityTimeout": "43201"}}, "InvalidAttributeValue", "Invalid value for the parameter VisibilityTimeout."),
    (sqs.set_queue_attributes, {"Attributes": {"DelaySeconds": "soon"}}, "InvalidAttributeValue", "Invalid value for the parameter DelaySeconds."),
    (sqs.set_queue_attributes, {"Attributes": {"Colour": "blue"}}, "InvalidAttributeName", "Unknown Attribute Colour."),
    (sqs.change_message_visibility, {"ReceiptHandle": "garbage", "VisibilityTimeout": 43201}, "InvalidParameterValue",
     "Value 43201 for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]."),
]:
    try:
        call(QueueUrl=q, **kwargs)
        sys.exit(f"FAIL {kwargs} accepted")
    except sqs.exceptions.ClientError as e:
        check((e.response["Error"]["Code"], e.response["Error"]["Message"]) == (code, text), f"error text for {kwargs}", e.response)
expect("EmptyBatchRequest", sqs.send_message_batch, QueueUrl=q, Entries=[])
expect("BatchEntryIdsNotDistinct", sqs.send_message_batch, QueueUrl=q, Entries=[{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}])
expect("TooManyEntriesInBatchRequest", sqs.send_message_batch, QueueUrl=q, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)])

# Tags: on CreateQueue, added, replaced, removed, bounded.
tq = sqs.create_queue(QueueName="tagged", tags={"team": "a"})["QueueUrl"]
check(sqs.list_queue_tags(QueueUrl=tq).get("Tags") == {"team": "a"}, "tags on create", sqs.list_queue_tags(QueueUrl=tq))
sqs.tag_queue(QueueUrl=tq, Tags={"env": "prod", "team": "b"})
check(sqs.list_queue_tags(QueueUrl=tq).get("Tags") == {"env": "prod", "team": "b"}, "tag_queue", sqs.list_queue_tags(QueueUrl=tq))
sqs.untag_queue(QueueUrl=tq, TagKeys=["team", "absent"])
check(sqs.list_queue_tags(QueueUrl=tq).get("Tags") == {"env": "prod"}, "untag_queue", sqs.list_queue_tags(QueueUrl=tq))
expect("InvalidParameterValue", sqs.tag_queue, QueueUrl=tq, Tags={f"k{i}": "v" for i in range(50)})
expect("InvalidParameterValue", sqs.tag_queue, QueueUrl=tq, Tags={"k" * 129: "v"})
expect("QueueDoesNotExist", sqs.list_queue_tags, QueueUrl=tq.replace("tagged", "nope"))
sqs.untag_queue(QueueUrl=tq, TagKeys=["env"])
check("Tags" not in sqs.list_queue_tags(QueueUrl=tq), "no tags left", sqs.list_queue_tags(QueueUrl=tq))

# Policy and KMS attributes: stored and returned, not enforced.
policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": "*"}]})
sqs.set_queue_attributes(QueueUrl=tq, Attributes={"Policy": policy, "KmsMasterKeyId": "alias/aws/sqs", "KmsDataKeyReusePeriodSeconds": "600"})
got = sqs.get_queue_attributes(QueueUrl=tq, AttributeNames=["All"])["Attributes"]
check(got.get("Policy") == policy, "Policy returned", got)
check(got.get("KmsMasterKeyId") == "alias/aws/sqs" and got.get("KmsDataKeyReusePeriodSeconds") == "600", "KMS returned", got)
check(got.get("SqsManagedSseEnabled") == "false", "a KMS key replaces SQS-managed encryption", got)
expect("InvalidAttributeValue", sqs.set_queue_attributes, QueueUrl=tq, Attributes={"Policy": "not json"})
expect("InvalidAttributeValue", sqs.set_queue_attributes, QueueUrl=tq, Attributes={"KmsDataKeyReusePeriodSeconds": "59"})

# Which queues send their failures to a dead-letter queue.
dlq = sqs.create_queue(QueueName="failures")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})
sources = [sqs.create_queue(QueueName=f"src{i}", Attributes={"RedrivePolicy": redrive})["QueueUrl"] for i in range(3)]
listed = sqs.list_dead_letter_source_queues(QueueUrl=dlq)
check(sorted(listed.get("queueUrls", [])) == sorted(sources), "list_dead_letter_source_queues", listed)
first = sqs.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2)
rest = sqs.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2, NextToken=first["NextToken"])
check(len(first["queueUrls"]) == 2 and len(rest["queueUrls"]) == 1 and "NextToken" not in rest, "paged sources", (first, rest))
check(sqs.list_dead_letter_source_queues(QueueUrl=tq).get("queueUrls") == [], "no sources", None)
for u in sources + [dlq, tq]:
    sqs.delete_queue(QueueUrl=u)

# A message move task puts dead-lettered messages back where they came from.
import time
dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
work = sqs.create_queue(QueueName="work", Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 1})})["QueueUrl"]
for i in range(5):
    sqs.send_message(QueueUrl=work, MessageBody=f"job{i}")
for _ in range(4):  # a second receive of each message dead-letters it
    sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=10, VisibilityTimeout=0)
count = lambda u: int(sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
check(count(dead) == 5 and count(work) == 0, "dead-lettered", (count(dead), count(work)))
work_arn = sqs.get_queue_attributes(QueueUrl=work, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
expect("InvalidParameterValue", sqs.start_message_move_task, SourceArn=work_arn)
expect("InvalidParameterValue", sqs.cancel_message_move_task, TaskHandle="no-such-task")
handle = sqs.start_message_move_task(SourceArn=dead_arn, MaxNumberOfMessagesPerSecond=2)["TaskHandle"]
running = sqs.list_message_move_tasks(SourceArn=dead_arn)["Results"]
check(running[0]["Status"] == "RUNNING" and running[0]["TaskHandle"] == handle, "move task running", running)
expect("InvalidParameterValue", sqs.start_message_move_task, SourceArn=dead_arn)
deadline = time.time() + 20
while sqs.list_message_move_tasks(SourceArn=dead_arn)["Results"][0]["Status"] == "RUNNING" and time.time() < deadline:
    time.sleep(0.2)
done = sqs.list_message_move_tasks(SourceArn=dead_arn, MaxResults=10)["Results"]
check(done[0]["Status"] == "COMPLETED" and done[0]["ApproximateNumberOfMessagesMoved"] == 5, "move task done", done)
check(done[0]["ApproximateNumberOfMessagesToMove"] == 5 and "TaskHandle" not in done[0], "finished task shape", done)
check(count(work) == 5 and count(dead) == 0, "moved back", (count(work), count(dead)))
back = sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"])["Messages"]
check(all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in back), "receive counts start again", back)
for u in (work, dead):
    sqs.delete_queue(QueueUrl=u)

sqs.send_message(QueueUrl=q, MessageBody="to purge")
sqs.purge_queue(QueueUrl=q)
check(sqs.receive_message(QueueUrl=q, WaitTimeSeconds=1).get("Messages", []) == [], "purged", None)
sqs.delete_queue(QueueUrl=q)
check(q not in sqs.list_queues().get("QueueUrls", []), "deleted", None)
print("ok")
