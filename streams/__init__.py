"""The pure rules core (no faust, aiokafka or rocksdict here) and the `mynapoint` command."""
