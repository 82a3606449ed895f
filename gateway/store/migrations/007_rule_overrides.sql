-- 007_rule_overrides: operator rule documents changed through the admin API.
--
-- Each row is one document in the format of a file in [rules] operator_dir (docs/rules.md,
-- "Operators: adding and replacing rules"), kept as the TOML text the operator sent, so what
-- is served, listed and audited is the operator's own text, comments and sources included.
-- The documents are laid over the shipped table together with the operator_dir files; a
-- change is validated against all of them before it is stored, then audited and announced
-- (NOTIFY <schema>_api, 'rules') in the same transaction (gateway/store/rule_overrides.py).

CREATE TABLE rule_overrides (
    name        text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_-]{0,63}$'),
    document    text        NOT NULL,
    revision    bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text        NOT NULL
);
