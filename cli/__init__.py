"""The `mynapoint` command line: argument parsing and wiring, above every other layer."""
