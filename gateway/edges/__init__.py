"""Edges (I/O layer): protocol adapters that turn wire input into InboundMessage and back."""
