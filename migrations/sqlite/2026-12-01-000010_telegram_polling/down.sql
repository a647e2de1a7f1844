DROP TABLE telegram_polls;
ALTER TABLE telegram_configs DROP COLUMN mode;
