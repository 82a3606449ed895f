"""Inbound SMTP edge (I/O layer): aiosmtpd served on the gateway loop, mail parsing helpers."""
