"""Developer tooling: local brokers, `mynapoint dev`, the demo history generator."""
