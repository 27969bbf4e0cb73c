"""Clients of the queues and topics dead letters and fanned-out work go to (SQS, SMN)."""
