"""What a worker does with each record, on any engine: the intake, ledger and claims steps, and
the runtime boundary (`runtime.py`) an engine implements to run them."""
