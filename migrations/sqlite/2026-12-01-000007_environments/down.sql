DROP INDEX visitors_external_user;
CREATE UNIQUE INDEX visitors_external_user ON visitors (tenant_id, external_user_id)
    WHERE external_user_id IS NOT NULL;
ALTER TABLE conversations DROP COLUMN environment;
ALTER TABLE visitors DROP COLUMN environment;
DROP TABLE tenant_environments;
