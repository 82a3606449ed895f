-- 017: when each API key was last used, for `gateway keys list`. Written by the key lookup
-- itself (gateway/store/api_store.py), which runs at most once every few seconds per key and
-- instance, and only when the stored time is over a minute old: no write per request.
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
