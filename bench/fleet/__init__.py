"""The fleet drill: an Auto Scaling stand-in running daemon instances (`python -m bench.fleet`)."""
