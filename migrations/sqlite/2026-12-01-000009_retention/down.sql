ALTER TABLE telegram_configs DROP COLUMN delete_topics_on_retention;
DROP INDEX visitors_last_seen;
DROP INDEX conversations_visitor;
DROP INDEX conversations_retention;
