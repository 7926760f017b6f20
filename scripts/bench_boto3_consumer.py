"""The simplest SQS consumer a user would write, as the poller benchmark's baseline (scripts/bench_poller.py):
receive up to 10 messages, POST them as one JSON event to an HTTP function, delete them in one batch,
until `count` messages are done. Prints its own CPU time (user + sys) for the loop, without interpreter
start-up and imports, and the system part of it, as JSON on stdout: `time.process_time()`, the process's CPU-time clock
(CLOCK_PROCESS_CPUTIME_ID, nanosecond resolution), the clock the driver reads for the poller.

Usage: python scripts/bench_boto3_consumer.py QUEUE_URL FUNCTION_URL COUNT
"""

import json
import os
import resource
import sys
import time

import boto3
import requests


def event(messages):
    """The `{"Records":[...]}` event of received messages, as a simple consumer builds it."""
    return {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                         "attributes": m.get("Attributes", {}), "md5OfBody": m["MD5OfBody"],
                         "eventSource": "aws:sqs"} for m in messages]}


def main():
    queue_url, function_url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sqs = boto3.client("sqs", endpoint_url=os.environ["POLLER_TEST_ENDPOINT"], region_name="us-east-1")
    http = requests.Session()
    done = 0
    cpu0, wall0, sys0 = time.process_time(), time.monotonic(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
    while done < count:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20,
            AttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            continue
        http.post(function_url, json=event(messages)).raise_for_status()
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ])
        done += len(messages)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_seconds": cpu, "system_seconds": usage.ru_stime - sys0, "wall_seconds": wall,
                      "peak_rss_mib": usage.ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
