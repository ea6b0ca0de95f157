"""The pipeline on Quix Streams: the second engine behind the runtime boundary
(streams/pipeline/runtime.py); agents/ is the first, on Faust."""
