"""Drives Levee's FIFO queues with an unmodified boto3 SQS client: names,
attributes, deduplication (explicit and content-based), sequence numbers,
per-group order, and a group held while one of its messages is in flight,
with consumers on several threads.

Usage: boto3_sqs_fifo.py ADMIN_URL ADMIN_TOKEN.
"""

import sys
import threading

import boto3
from botocore.config import Config

url, token = sys.argv[1], sys.argv[2]
sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id=token,
                   aws_secret_access_key="unused", config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def check(cond, what, detail):
    if not cond:
        sys.exit(f"FAIL {what}: {detail!r}")


def expect(code, call, **kwargs):
    try:
        call(**kwargs)
    except sqs.exceptions.ClientError as e:
        check(e.response["Error"]["Code"] == code, f"error {code}", e.response)
        return e.response["Error"]["Message"]
    sys.exit(f"FAIL expected {code} from {kwargs}")


expect("InvalidParameterValue", sqs.create_queue, QueueName="plain.fifo")
expect("InvalidParameterValue", sqs.create_queue, QueueName="plain", Attributes={"FifoQueue": "true"})
q = sqs.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
attrs = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
check(attrs.get("FifoQueue") == "true" and attrs.get("ContentBasedDeduplication") == "true", "FIFO attributes", attrs)
check(attrs.get("DeduplicationScope") == "queue" and attrs.get("FifoThroughputLimit") == "perQueue", "FIFO defaults", attrs)
std = sqs.create_queue(QueueName="standard")["QueueUrl"]
check("FifoQueue" not in sqs.get_queue_attributes(QueueUrl=std, AttributeNames=["All"])["Attributes"], "standard has no FifoQueue", None)
msg = expect("InvalidParameterValue", sqs.send_message, QueueUrl=std, MessageBody="x", MessageDeduplicationId="d")
check("not valid for this queue type" in msg, "dedup id on a standard queue", msg)
check(expect("MissingParameter", sqs.send_message, QueueUrl=q, MessageBody="x") == "The request must contain the parameter MessageGroupId.", "group id required", None)
expect("InvalidParameterValue", sqs.send_message, QueueUrl=q, MessageBody="x", MessageGroupId="g", DelaySeconds=5)
expect("InvalidAttributeName", sqs.set_queue_attributes, QueueUrl=std, Attributes={"ContentBasedDeduplication": "true"})

# Deduplication: the same body (content-based) or the same id answers with the first message.
first = sqs.send_message(QueueUrl=q, MessageBody="a1", MessageGroupId="A")
again = sqs.send_message(QueueUrl=q, MessageBody="a1", MessageGroupId="A")
check(first["MessageId"] == again["MessageId"] and first["SequenceNumber"] == again["SequenceNumber"], "content dedup", (first, again))
by_id = sqs.send_message(QueueUrl=q, MessageBody="a2", MessageGroupId="A", MessageDeduplicationId="x-2")
same_id = sqs.send_message(QueueUrl=q, MessageBody="different body", MessageGroupId="A", MessageDeduplicationId="x-2")
check(by_id["MessageId"] == same_id["MessageId"], "explicit dedup", (by_id, same_id))
check(int(by_id["SequenceNumber"]) > int(first["SequenceNumber"]), "sequence numbers grow", (first, by_id))
batch = sqs.send_message_batch(QueueUrl=q, Entries=[
    {"Id": "3", "MessageBody": "a3", "MessageGroupId": "A"},
    {"Id": "4", "MessageBody": "b1", "MessageGroupId": "B"},
    {"Id": "5", "MessageBody": "b2", "MessageGroupId": "B"},
])
check(len(batch["Successful"]) == 3 and all("SequenceNumber" in e for e in batch["Successful"]), "batch", batch)
count = int(sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
check(count == 5, "duplicates were not stored", count)

# A group's messages come in order; a group with one in flight gives nothing more.
got = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=1, AttributeNames=["All"])["Messages"]
check([m["Body"] for m in got] == ["a1"], "head of the queue", got)
check(got[0]["Attributes"]["MessageGroupId"] == "A" and got[0]["Attributes"]["SequenceNumber"] == first["SequenceNumber"], "FIFO system attributes", got[0]["Attributes"])
nxt = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10)["Messages"]
check([m["Body"] for m in nxt] == ["b1", "b2"], "group A held while a1 is in flight", nxt)
check(sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10).get("Messages", []) == [], "both groups held", None)
sqs.delete_message(QueueUrl=q, ReceiptHandle=got[0]["ReceiptHandle"])
rest = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10)["Messages"]
check([m["Body"] for m in rest] == ["a2", "a3"], "group A resumes in order", rest)
for m in nxt + rest:
    sqs.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])

# Several consumers at once: each group still comes out in send order.
groups = {g: [f"{g}-{i}" for i in range(20)] for g in "PQRS"}
for i in range(20):
    sqs.send_message_batch(QueueUrl=q, Entries=[{"Id": g, "MessageBody": groups[g][i], "MessageGroupId": g} for g in groups])
seen = {g: [] for g in groups}
lock = threading.Lock()


def consume():
    local = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id=token, aws_secret_access_key="unused")
    idle = 0
    while idle < 3:
        ms = local.receive_message(QueueUrl=q, MaxNumberOfMessages=3, WaitTimeSeconds=1).get("Messages", [])
        idle = idle + 1 if not ms else 0
        for m in ms:
            with lock:
                seen[m["Body"].split("-")[0]].append(m["Body"])
            local.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])


threads = [threading.Thread(target=consume) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=120)
check(seen == groups, "per-group order under four consumers", seen)

# A retried receive (same ReceiveRequestAttemptId) gets the same messages back.
sqs.send_message(QueueUrl=q, MessageBody="retry-me", MessageGroupId="R")
one = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, ReceiveRequestAttemptId="attempt-1")["Messages"]
two = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, ReceiveRequestAttemptId="attempt-1")["Messages"]
check([m["ReceiptHandle"] for m in one] == [m["ReceiptHandle"] for m in two] and [m["Body"] for m in one] == ["retry-me"], "attempt id replays", (one, two))
check(sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, ReceiveRequestAttemptId="attempt-2").get("Messages", []) == [], "a new attempt finds the group in flight", None)
sqs.delete_message(QueueUrl=q, ReceiptHandle=one[0]["ReceiptHandle"])

# A FIFO queue's dead-letter queue is a FIFO queue.
dlq = sqs.create_queue(QueueName="standard-dlq")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
expect("InvalidParameterValue", sqs.set_queue_attributes, QueueUrl=q, Attributes={"RedrivePolicy": '{"deadLetterTargetArn": "%s", "maxReceiveCount": 2}' % arn})
for u in (q, std, dlq):
    sqs.delete_queue(QueueUrl=u)
print("ok")
