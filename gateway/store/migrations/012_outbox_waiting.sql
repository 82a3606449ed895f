-- 012: the rows still waiting to leave, for readiness and the backlog metrics.
-- /readyz asks for the oldest unsent opt-out confirmation on every probe and the outbox
-- monitor groups the waiting rows every few seconds (gateway/outbox.py): both read only the
-- rows queued or being sent, a handful among every reply ever sent.
CREATE INDEX outbox_waiting ON outbox (kind, created_at) WHERE status IN ('queued', 'sending');
