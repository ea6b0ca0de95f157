"""Kafka clients outside any consumer group: topics admin, producing files, reading history."""
