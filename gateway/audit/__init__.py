"""Audit documents (pure layer): reports, consent receipts, imports and their rules.

Everything here takes data in and gives documents out (JSON, HTML, SVG, parsed rows); the
queries live in gateway/store/ and the wiring in gateway/app/. ``receipt_verify`` stands
alone (standard library and ``cryptography`` only) so a receipt can be checked anywhere.
"""
