"""The public contract as types: input events, outcomes, and their one decoder and encoder."""
