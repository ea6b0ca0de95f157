"""The live pipeline: Faust agents, RocksDB tables and Kafka topics around the pure rules core."""
