"""Reproducible figures for sqs-poller against moto's SQS server on loopback (`make bench`)."""
