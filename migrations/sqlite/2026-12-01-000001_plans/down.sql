DROP TRIGGER plans_in_use_rename;
DROP TRIGGER plans_in_use_delete;
DROP TRIGGER tenants_plan_exists_update;
DROP TRIGGER tenants_plan_exists_insert;
DROP INDEX tenants_plan;
ALTER TABLE tenants DROP COLUMN plan_code;
DROP TABLE plans;
