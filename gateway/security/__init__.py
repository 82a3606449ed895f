"""Keys, signatures and tokens: HMAC request signatures, AEAD link tokens, the legacy opener."""
