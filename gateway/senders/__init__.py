"""Outbound senders (I/O layer): one module per channel, each an ``OutboundSender``."""
