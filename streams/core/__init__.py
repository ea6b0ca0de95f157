"""What decides: the pure rules core (no Kafka, no Faust, no RocksDB)."""
