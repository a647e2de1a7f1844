DROP INDEX api_keys_issued_by;
ALTER TABLE api_keys DROP COLUMN issued_by;
