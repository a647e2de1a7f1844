DROP TABLE visitor_tokens;
DROP INDEX visitors_external_user;
ALTER TABLE visitors DROP COLUMN external_user_id;
ALTER TABLE tenants DROP COLUMN identity_secret_enc;
