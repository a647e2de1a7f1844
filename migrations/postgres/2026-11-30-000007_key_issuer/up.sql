-- The key that issued a key (NULL: issued by an operator on the command line, or
-- before issuers were recorded). Revoking a key revokes what it issued, transitively.
ALTER TABLE api_keys ADD COLUMN issued_by TEXT NULL;
CREATE INDEX api_keys_issued_by ON api_keys (issued_by);
