"""Start moto server (the AWS emulator the tests use) with fixes to SQS FIFO receives and deep queues,
Kinesis resharding, DynamoDB conditional writes and HTTP keep-alive (see docs/testing.md).

SQS never hands out messages of a FIFO message group while earlier messages of that group are in
flight. moto 5.2.5 checks this against a snapshot of the in-flight groups taken when a ReceiveMessage
call *starts*, without a lock. Two concurrent receives (an event source mapping polls with several) can
therefore both take messages of one group, and a long poll keeps skipping a group that was freed after
it started. Both break the FIFO guarantee the poller relies on, as AWS Lambda does.

The replacement below is moto's own receive loop with the in-flight groups read afresh on every pass
(minus the messages this call took, which may be delivered together) and the check-and-take done under
a lock. DeleteMessage runs under the same lock: moto's own can lose a concurrent delete. It also reads the queue's retention period once per pass instead of through
GetQueueAttributes for every message, which counted the whole queue each time (0.4 s per receive on a
queue of 1,000 messages). Everything else is plain moto. Usage: the same arguments as `moto_server`.
"""

import threading
import time

from moto.server import main
from moto.sqs import models

_take_lock = threading.Lock()


def receive_message(
    self, queue_name, count, wait_seconds_timeout, visibility_timeout, message_attribute_names=None
):
    if message_attribute_names is None:
        message_attribute_names = []
    queue = self.get_queue(queue_name)
    result = []
    taken = set()
    polling_end = models.unix_time() + wait_seconds_timeout
    while True:
        messages_to_dlq = []
        with _take_lock:
            busy_groups = {
                m.group_id
                for m in queue.pending_messages
                if m.group_id is not None and id(m) not in taken and m.visible is False
            }
            # moto's `queue.messages` lists every visible message of the queue before the first is
            # taken: walking the queue lazily keeps a receive of 10 from a deep queue short.
            for message in queue._messages:
                if not message.visible or message.delayed:
                    continue
                if message in queue.pending_messages:
                    # In flight before, visible again: the consumer's visibility timeout ran out.
                    queue.pending_messages.remove(message)
                if queue.fifo_queue and message.group_id in busy_groups:
                    continue
                if (
                    queue.dead_letter_queue is not None
                    and queue.redrive_policy
                    and message.approximate_receive_count >= queue.redrive_policy["maxReceiveCount"]
                ):
                    messages_to_dlq.append(message)
                    continue
                queue.pending_messages.add(message)
                message.mark_received(visibility_timeout=visibility_timeout)
                taken.add(id(message))
                message_copy = models.deepcopy(message)
                models._filter_message_attributes(message_copy, message_attribute_names)
                if int(queue.message_retention_period) + message.sent_timestamp / 1000 <= models.unix_time():
                    break
                result.append(message_copy)
                if len(result) >= count:
                    break
            for message in messages_to_dlq:
                queue._messages.remove(message)
                queue.dead_letter_queue.add_message(message)
        if result or not wait_seconds_timeout or models.unix_time() > polling_end:
            return result
        # Nothing deliverable yet: wait for new messages, or for a busy group to free up.
        queue.wait_for_messages(1)
        time.sleep(0.02)


models.SQSBackend.receive_message = receive_message


def _delete_one_message(self, receipt_handle):
    # moto's own walks the whole queue twice in Python (to check the handle, then to rebuild the list),
    # which makes draining a queue quadratic in its length. A handle belongs to one message: find it
    # (near the front of a queue consumed in order) and copy the list around it at C speed. The list is
    # still replaced rather than changed in place, as moto's is, for readers iterating it unlocked.
    if receipt_handle in self.deleted_messages:
        return
    index = next((i for i, m in enumerate(self._messages) if m.had_receipt_handle(receipt_handle)), None)
    if index is None:
        raise models.ReceiptHandleIsInvalid()
    message = self._messages[index]
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)
    self._messages = self._messages[:index] + self._messages[index + 1:]


def delete_message(self, receipt_handle):
    # moto rebuilds the queue's message list without the deleted message and assigns it back, without a
    # lock: of two concurrent deletes (or a delete and a send) one is lost, though both calls succeed, and
    # the "deleted" message is delivered again after its visibility timeout. Deletes, receives and sends
    # of a queue are serialized here.
    with _take_lock, self._messages_lock:
        _delete_one_message(self, receipt_handle)


models.Queue.delete_message = delete_message

# SendMessage reads one queue attribute, ContentBasedDeduplication, through moto's `queue.attributes`,
# which computes every attribute, among them the approximate message counts, each a walk of the whole
# queue: filling a queue was quadratic in its length (a 20,000-message fill took most of an hour).
# While a send runs, `queue.attributes` gives that one attribute, with the value moto's would have
# (FIFO queues only, "true" or "false"); GetQueueAttributes and everything else read moto's own.
_sending = threading.local()
_queue_attributes = models.Queue.attributes


def _attributes(self):
    if not getattr(_sending, "active", False):
        return _queue_attributes.fget(self)
    if not self.fifo_queue:
        return {}
    value = self.content_based_deduplication
    return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}


models.Queue.attributes = property(_attributes)


def _while_sending(send):
    def wrapper(*args, **kwargs):
        outer = getattr(_sending, "active", False)
        _sending.active = True
        try:
            return send(*args, **kwargs)
        finally:
            _sending.active = outer

    return wrapper


models.SQSBackend.send_message = _while_sending(models.SQSBackend.send_message)
models.SQSBackend.send_message_batch = _while_sending(models.SQSBackend.send_message_batch)

# --- Kinesis -------------------------------------------------------------------------------------
# moto 5.2.5 differs from Kinesis where a shard worker depends on it:
# 1. SplitShard / MergeShards move (split) or copy (merge) the parents' records into the children, with
#    new sequence numbers. Kinesis leaves records in the closed parent until they expire, and a consumer
#    reads the parent to its end before its children, so moto's version both loses the parent's records
#    and re-delivers them out of order. The fix runs moto's own code with the parents' records set aside.
# 2. PutRecord(s) can route a record to a closed parent (moto looks through every shard, in creation order).
#    Kinesis writes only to open shards.
# 3. GetRecords always returns a NextShardIterator. Kinesis leaves it out once a closed shard has been read
#    to its end; that is how a consumer learns it may move on to the children.
from collections import OrderedDict

from moto.kinesis import models as kinesis_models
from moto.kinesis.utils import decompose_shard_iterator
from moto.utilities.utils import md5_hash


def _keeping_parent_records(reshard):
    def wrapper(self, *shard_ids_and_args):
        # split_shard(shard, hash_key), merge_shards(shard, adjacent): the first argument(s) are shard ids.
        parents = [self.shards[s] for s in shard_ids_and_args if isinstance(s, str) and s in self.shards]
        kept = [(parent, parent.records) for parent in parents]
        for parent in parents:
            parent.records = OrderedDict()
        try:
            return reshard(self, *shard_ids_and_args)
        finally:
            for parent, records in kept:
                parent.records = records

    return wrapper


kinesis_models.Stream.split_shard = _keeping_parent_records(kinesis_models.Stream.split_shard)
kinesis_models.Stream.merge_shards = _keeping_parent_records(kinesis_models.Stream.merge_shards)

_get_shard_for_key = kinesis_models.Stream.get_shard_for_key


def get_open_shard_for_key(self, partition_key, explicit_hash_key):
    shard = _get_shard_for_key(self, partition_key, explicit_hash_key)  # moto's checks of the key
    if shard is None or shard.is_open:
        return shard
    if explicit_hash_key:
        key = int(explicit_hash_key)
    else:
        key = int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    return next(
        (s for s in self.shards.values() if s.is_open and s.starting_hash <= key <= s.ending_hash),
        None,
    )


kinesis_models.Stream.get_shard_for_key = get_open_shard_for_key

_kinesis_get_records = kinesis_models.KinesisBackend.get_records


def kinesis_get_records(self, stream_arn, shard_iterator, limit):
    next_iterator, records, millis_behind = _kinesis_get_records(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, last_sequence = decompose_shard_iterator(next_iterator)
    shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
    if not shard.is_open and int(last_sequence) >= shard.get_max_sequence_number():
        next_iterator = None
    return next_iterator, records, millis_behind


kinesis_models.KinesisBackend.get_records = kinesis_get_records

# --- DynamoDB ------------------------------------------------------------------------------------
# DynamoDB applies each single-item write atomically: a conditional PutItem/UpdateItem/DeleteItem
# checks its condition and writes in one step, so of two writers conditioned on the same value exactly
# one succeeds (the lease store's fencing relies on it). moto 5.2.5 serves requests on several threads
# and checks the condition, then writes, without a lock: two racing conditional writes can both pass
# the check, and both "win" a lease. Every DynamoDB request therefore runs under one lock, held for the
# whole handler (UpdateItem's handler also reads the old item before the backend writes). Requests are
# short in-memory operations, so serialising them costs the tests nothing measurable.
from moto.dynamodb.responses import DynamoHandler

_dynamodb_lock = threading.RLock()
_dynamodb_call_action = DynamoHandler.call_action


def dynamodb_call_action(self):
    with _dynamodb_lock:
        return _dynamodb_call_action(self)


DynamoHandler.call_action = dynamodb_call_action

# --- HTTP keep-alive -----------------------------------------------------------------------------
# AWS endpoints keep HTTP/1.1 connections open between requests; werkzeug 3.1's development server, which
# moto runs, answers every request with `Connection: close`, because it cannot drain an unread request
# body without reading into the next request. Every call then opens a new TCP connection, which a
# client of real AWS does not pay, and which hides how a client behaves on a connection the server
# has closed while it was idle. The handler below keeps connections open: it reads the request body
# whole (by its Content-Length) before the application runs, so nothing is left unread, and sends
# every answer with the Content-Length of its body as buffered; a request it cannot delimit (chunked)
# or an application error closes the connection as before. The server stays threaded: one thread per
# open connection, which also lets a long-polling ReceiveMessage wait without blocking other calls.
import io

from moto.moto_server.werkzeug_app import MotoRequestHandler

# A kept-alive connection left idle this long is closed by the server (real endpoints close idle
# connections too); it bounds the threads a client that never closes its connections can hold.
MotoRequestHandler.timeout = 120
# Headers and body go out in two writes: without TCP_NODELAY the second waits for the client's ACK.
MotoRequestHandler.disable_nagle_algorithm = True


def run_wsgi_keep_alive(self):
    if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
    if chunked:
        self.close_connection = True
        body = None
    else:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
    self.environ = environ = self.make_environ()
    if body is not None:
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    started = []

    def start_response(status, headers, exc_info=None):
        # Nothing is sent before the application returns, so an error page may always replace the
        # status and headers given before (WSGI re-raises only once headers have gone out).
        started[:] = [status, headers]
        return lambda data: chunks.append(data)

    chunks = []
    try:
        application_iter = self.server.app(environ, start_response)
        try:
            chunks.extend(application_iter)
        finally:
            if hasattr(application_iter, "close"):
                application_iter.close()
    except Exception as e:
        if self.server.passthrough_errors:
            raise
        self.close_connection = True
        self.server.log("error", f"Error on request {self.command} {self.path}: {e!r}")
        started[:] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
        chunks = [b"Internal Server Error"]
    status, headers = started
    code, _, reason = status.partition(" ")
    code = int(code)
    payload = b"".join(chunks)
    self.send_response(code, reason)
    for key, value in headers:
        if key.lower() not in ("content-length", "transfer-encoding", "connection"):
            self.send_header(key, value)
    if environ["REQUEST_METHOD"] == "HEAD":
        # The length of the body a GET would have had, as the application gave it.
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        if length is not None:
            self.send_header("Content-Length", length)
        payload = b""
    elif not (100 <= code < 200 or code in (204, 304)):
        self.send_header("Content-Length", str(len(payload)))
    else:
        payload = b""
    if self.close_connection:
        self.send_header("Connection", "close")
    self.end_headers()
    self.wfile.write(payload)
    self.wfile.flush()


MotoRequestHandler.run_wsgi = run_wsgi_keep_alive

if __name__ == "__main__":
    main()
