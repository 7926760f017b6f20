"""Start moto server (the AWS emulator the tests use) with one fix to SQS FIFO receives.

SQS never hands out messages of a FIFO message group while earlier messages of that group are in
flight. moto 5.2.5 checks this against a snapshot of the in-flight groups taken when a ReceiveMessage
call *starts*, without a lock. Two concurrent receives (an event source mapping polls with several) can
therefore both take messages of one group, and a long poll keeps skipping a group that was freed after
it started. Both break the FIFO guarantee the poller relies on, as AWS Lambda does.

The replacement below is moto's own receive loop with the in-flight groups read afresh on every pass
(minus the messages this call took, which may be delivered together) and the check-and-take done under
a lock. It also reads the queue's retention period once per pass instead of through
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
            for message in queue.messages:
                if not message.visible:
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

if __name__ == "__main__":
    main()
