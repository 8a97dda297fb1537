"""AWS's exact errors, through an unmodified boto3 client: each case below
is a request whose answer AWS recorded (LocalStack's snapshot tests, run
against real SQS) and the HTTP status, code and message it gave, word for
word. Exits non-zero at the first answer that differs.

Usage: boto3_sqs_errors.py ADMIN_URL ADMIN_TOKEN.
"""

import base64
import json
import sys
import time

import boto3
from botocore.config import Config

url, token = sys.argv[1], sys.argv[2]
sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id=token,
                   aws_secret_access_key="unused", config=Config(retries={"max_attempts": 1, "mode": "standard"}))
failures = []


def aws(status, code, message, call, **kwargs):
    try:
        call(**kwargs)
        failures.append(f"{call.__name__}: succeeded, expected {code}")
        return
    except sqs.exceptions.ClientError as e:
        got = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], e.response["Error"]["Message"])
    if got != (status, code, message):
        failures.append(f"{call.__name__}:\n  expected {(status, code, message)!r}\n  got      {got!r}")


def ok(call, **kwargs):
    try:
        return call(**kwargs)
    except sqs.exceptions.ClientError as e:
        failures.append(f"{call.__name__}: expected success, got {e.response['Error']}")


def arn(queue_url):
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


BAD = "InvalidParameterValue"
ID_RULE = "can only include alphanumeric and punctuation characters. 1 to 128 in length."
std = sqs.create_queue(QueueName="std", Attributes={"DelaySeconds": "1"})["QueueUrl"]
fifo = sqs.create_queue(QueueName="cbd.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
plain_fifo = sqs.create_queue(QueueName="plain.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
small = sqs.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]

# CreateQueue and SetQueueAttributes.
aws(400, "QueueAlreadyExists", "A queue already exists with the same name and a different value for attribute DelaySeconds",
    sqs.create_queue, QueueName="std", Attributes={"DelaySeconds": "2"})
aws(400, "QueueAlreadyExists", "A queue already exists with the same name and a different value for attribute ContentBasedDeduplication",
    sqs.create_queue, QueueName="cbd.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"})
aws(400, "InvalidAttributeName", "Unknown Attribute FifoQueue.", sqs.create_queue, QueueName="s1", Attributes={"FifoQueue": "false"})
aws(400, "InvalidAttributeName", "Unknown Attribute ContentBasedDeduplication.", sqs.create_queue, QueueName="s2", Attributes={"ContentBasedDeduplication": "false"})
aws(400, "InvalidAttributeName", "You can specify the DeduplicationScope only when FifoQueue is set to true.",
    sqs.create_queue, QueueName="s3", Attributes={"DeduplicationScope": "queue"})
aws(400, "InvalidAttributeName", "You can specify the FifoThroughputLimit only when FifoQueue is set to true.",
    sqs.create_queue, QueueName="s4", Attributes={"FifoThroughputLimit": "perQueue"})
policy = json.dumps({"deadLetterTargetArn": "dummy", "maxReceiveCount": 42})
aws(400, BAD, f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Invalid value for deadLetterTargetArn.",
    sqs.create_queue, QueueName="s5", Attributes={"RedrivePolicy": policy})
# The one text here not from those recordings (they pin only the code):
# what the AWS CLI prints for a bad name.
aws(400, BAD, "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
    sqs.create_queue, QueueName="bad name")
aws(400, "InvalidAttributeName", "Unknown Attribute FifoQueue.", sqs.set_queue_attributes, QueueUrl=std, Attributes={"FifoQueue": "true"})
aws(400, "InvalidAttributeName", "Unknown Attribute FifoQueue.", sqs.set_queue_attributes, QueueUrl=std, Attributes={"FifoQueue": "false"})
aws(400, "InvalidAttributeValue", "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.",
    sqs.set_queue_attributes, QueueUrl=fifo, Attributes={"FifoQueue": "false"})
ok(sqs.set_queue_attributes, QueueUrl=fifo, Attributes={"FifoQueue": "true"})
aws(400, "InvalidAttributeName", "You can use one type of server-side encryption (SSE) at one time. You can either enable KMS SSE or SQS SSE.",
    sqs.set_queue_attributes, QueueUrl=std, Attributes={"KmsMasterKeyId": "testKeyId", "SqsManagedSseEnabled": "true"})

# SendMessage.
k = {"k": {"DataType": "String", "StringValue": "x"}}
aws(400, "MissingParameter", "The request must contain the parameter MessageBody.", sqs.send_message, QueueUrl=std, MessageBody="")
aws(400, BAD, "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.",
    sqs.send_message, QueueUrl=std, MessageBody="a" * (262144 - 9 + 1), MessageAttributes=k)
aws(400, BAD, "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes.",
    sqs.send_message, QueueUrl=small, MessageBody="a" * (1024 - 9 + 1), MessageAttributes=k)
ok(sqs.send_message, QueueUrl=small, MessageBody="a" * 1024)
aws(400, BAD, "Value 2 for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
    sqs.send_message, QueueUrl=fifo, MessageBody="x", MessageGroupId="1", DelaySeconds=2)
ok(sqs.send_message, QueueUrl=fifo, MessageBody="zero delay", MessageGroupId="1", DelaySeconds=0)
aws(400, BAD, "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
    sqs.send_message, QueueUrl=plain_fifo, MessageBody="x", MessageGroupId="1")
aws(400, "MissingParameter", "The request must contain the parameter MessageGroupId.",
    sqs.send_message, QueueUrl=plain_fifo, MessageBody="x", MessageDeduplicationId="d")
aws(400, BAD, "Message (user) attribute 'ErrorDetails' must contain a non-empty value of type 'String'.",
    sqs.send_message, QueueUrl=std, MessageBody="x", MessageAttributes={"ErrorDetails": {"StringValue": "", "DataType": "String"}})
for value in ["", "a" * 129, "group 123"]:
    aws(400, BAD, f"Value {value} for parameter MessageGroupId is invalid. Reason: MessageGroupId {ID_RULE}",
        sqs.send_message, QueueUrl=std, MessageBody="x", MessageGroupId=value)
    aws(400, BAD, f"Value {value} for parameter MessageDeduplicationId is invalid. Reason: MessageDeduplicationId {ID_RULE}",
        sqs.send_message, QueueUrl=fifo, MessageBody="x", MessageGroupId="test", MessageDeduplicationId=value)
ok(sqs.send_message, QueueUrl=std, MessageBody="x", MessageGroupId="test")
ok(sqs.send_message, QueueUrl=fifo, MessageBody="x", MessageGroupId="test", MessageDeduplicationId="a" * 128)

# SendMessageBatch.
aws(400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "Maximum number of entries per request are 10. You have sent 20.",
    sqs.send_message_batch, QueueUrl=std, Entries=[{"Id": f"message-{i}", "MessageBody": "x"} for i in range(20)])
aws(400, "AWS.SimpleQueueService.InvalidBatchEntryId",
    "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
    sqs.send_message_batch, QueueUrl=std, Entries=[{"Id": "message:1", "MessageBody": "x"}])
aws(400, "AWS.SimpleQueueService.BatchRequestTooLong", "Batch requests cannot be longer than 262144 bytes. You have sent 262145 bytes.",
    sqs.send_message_batch, QueueUrl=std, Entries=[{"Id": "1", "MessageBody": "a" * (262144 - 9), "MessageAttributes": k},
                                                   {"Id": "2", "MessageBody": "a"}])
aws(400, BAD, "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
    sqs.send_message_batch, QueueUrl=plain_fifo, Entries=[{"Id": "1", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "d1"},
                                                          {"Id": "2", "MessageBody": "b", "MessageGroupId": "g"}])
aws(400, BAD, "The request must contain the parameter MessageGroupId.",
    sqs.send_message_batch, QueueUrl=plain_fifo, Entries=[{"Id": "1", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "d1"},
                                                          {"Id": "2", "MessageBody": "b", "MessageDeduplicationId": "d2"}])
sizes = ok(sqs.send_message_batch, QueueUrl=small, Entries=[{"Id": "fits", "MessageBody": "a" * 1024}, {"Id": "over", "MessageBody": "a" * 1025}])
if sizes and (len(sizes.get("Successful", [])) != 1 or sizes.get("Failed") != [{
        "Id": "over", "SenderFault": True, "Code": BAD,
        "Message": "One or more parameters cannot be validated. Reason: Message must be shorter than 1024 bytes."}]):
    failures.append(f"per-entry size failure: {sizes}")

# ReceiveMessage, DeleteMessage, ChangeMessageVisibility.
aws(400, BAD, "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.",
    sqs.receive_message, QueueUrl=std, MaxNumberOfMessages=11)
for wait in [21, -1]:
    aws(400, BAD, f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.",
        sqs.receive_message, QueueUrl=std, WaitTimeSeconds=wait)
brief = sqs.create_queue(QueueName="brief", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
sqs.send_message(QueueUrl=brief, MessageBody="x")
gone = sqs.receive_message(QueueUrl=brief)["Messages"][0]["ReceiptHandle"]
sqs.delete_message(QueueUrl=brief, ReceiptHandle=gone)
ok(sqs.delete_message, QueueUrl=brief, ReceiptHandle=gone)
aws(400, BAD, f"Value {gone} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.",
    sqs.change_message_visibility, QueueUrl=brief, ReceiptHandle=gone, VisibilityTimeout=42)
aws(400, "ReceiptHandleIsInvalid", 'The input receipt handle "garbage" is not a valid receipt handle.',
    sqs.delete_message, QueueUrl=brief, ReceiptHandle="garbage")
brief_fifo = sqs.create_queue(QueueName="brief.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "1"})["QueueUrl"]
for body in ["expired", "extended"]:
    sqs.send_message(QueueUrl=brief_fifo, MessageBody=body, MessageGroupId=body)
got = {m["Body"]: m["ReceiptHandle"] for m in sqs.receive_message(QueueUrl=brief_fifo, MaxNumberOfMessages=10)["Messages"]}
ok(sqs.change_message_visibility, QueueUrl=brief_fifo, ReceiptHandle=got["extended"], VisibilityTimeout=30)
time.sleep(1.5)
aws(400, BAD, f"Value {got['expired']} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.",
    sqs.delete_message, QueueUrl=brief_fifo, ReceiptHandle=got["expired"])
ok(sqs.delete_message, QueueUrl=brief_fifo, ReceiptHandle=got["extended"])
for action, entries in [(sqs.delete_message_batch, {"ReceiptHandle": "x"}), (sqs.change_message_visibility_batch, {"ReceiptHandle": "x", "VisibilityTimeout": 123})]:
    aws(400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "Maximum number of entries per request are 10. You have sent 20.",
        action, QueueUrl=std, Entries=[{"Id": str(i), **entries} for i in range(20)])
for bad_id in ["", "testLongId" * 10, "invalid:id"]:
    aws(400, "AWS.SimpleQueueService.InvalidBatchEntryId",
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
        sqs.delete_message_batch, QueueUrl=std, Entries=[{"Id": bad_id, "ReceiptHandle": "x"}])

# PurgeQueue, missing queues, names deleted a moment ago.
ok(sqs.purge_queue, QueueUrl=std)
aws(403, "AWS.SimpleQueueService.PurgeQueueInProgress", "Only one PurgeQueue operation on std is allowed every 60 seconds.",
    sqs.purge_queue, QueueUrl=std)
doomed = sqs.create_queue(QueueName="doomed")["QueueUrl"]
sqs.delete_queue(QueueUrl=doomed)
aws(400, "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.", sqs.get_queue_attributes, QueueUrl=doomed)
aws(400, "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.", sqs.get_queue_url, QueueName="doomed")
aws(400, "AWS.SimpleQueueService.QueueDeletedRecently",
    "You must wait 60 seconds after deleting a queue before you can create another with the same name.",
    sqs.create_queue, QueueName="doomed")

# Message move tasks.
dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
source = sqs.create_queue(QueueName="source", Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": arn(dlq), "maxReceiveCount": 1})})["QueueUrl"]
aws(400, BAD, "Source queue must be configured as a Dead Letter Queue.",
    sqs.start_message_move_task, SourceArn=arn(source), DestinationArn=arn(small))
aws(404, "ResourceNotFoundException", "The resource that you specified for the DestinationArn parameter doesn't exist.",
    sqs.start_message_move_task, SourceArn=arn(dlq), DestinationArn=arn(small) + "doesntexist")
for i in range(10):
    sqs.send_message(QueueUrl=dlq, MessageBody=f"m{i}")
handle = sqs.start_message_move_task(SourceArn=arn(dlq), DestinationArn=arn(source), MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
aws(400, BAD, "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
    sqs.start_message_move_task, SourceArn=arn(dlq), DestinationArn=arn(source), MaxNumberOfMessagesPerSecond=1)
decoded = json.loads(base64.b64decode(handle))
if decoded.get("sourceArn") != arn(dlq) or len(decoded.get("taskId", "")) != 36:
    failures.append(f"task handle shape: {decoded}")
running = sqs.list_message_move_tasks(SourceArn=arn(dlq))["Results"][0]
if running.get("TaskHandle") != handle or running.get("MaxNumberOfMessagesPerSecond") != 1 or running.get("Status") != "RUNNING":
    failures.append(f"running task: {running}")
aws(400, BAD, "Value for parameter TaskHandle is invalid.", sqs.cancel_message_move_task, TaskHandle="foobared")


def task_handle(task_id, source_arn):
    return base64.b64encode(json.dumps({"taskId": task_id, "sourceArn": source_arn}, separators=(",", ":")).encode()).decode()


aws(404, "ResourceNotFoundException", "The resource that you specified for the SourceArn parameter doesn't exist.",
    sqs.cancel_message_move_task, TaskHandle=task_handle("10f57157-fc38-4da9-a113-4de7e12d05dd", "arn:aws:sqs:us-east-1:000000000000:test-queue-doesnt-exist-123456"))
aws(404, "ResourceNotFoundException", "Task does not exist.",
    sqs.cancel_message_move_task, TaskHandle=task_handle("10f57157-fc38-4da9-a113-4de7e12d05aa", arn(dlq)))
cancelled = ok(sqs.cancel_message_move_task, TaskHandle=handle)
if cancelled is not None and "ApproximateNumberOfMessagesMoved" not in cancelled:
    failures.append(f"cancel answer: {cancelled}")

if failures:
    sys.exit("FAIL\n" + "\n".join(failures))
print("ok: every answer as AWS recorded it")
