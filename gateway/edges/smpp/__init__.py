"""SMPP 3.4 edge (I/O layer): an asyncio ESME that binds to SMSCs; see edge.py."""
