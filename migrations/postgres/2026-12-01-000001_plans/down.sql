DROP INDEX tenants_plan;
ALTER TABLE tenants DROP COLUMN plan_code;
DROP TABLE plans;
