DROP TABLE outbox;
DROP TABLE telegram_updates;
DROP INDEX messages_telegram;
ALTER TABLE messages DROP COLUMN telegram_message_id;
DROP INDEX conversations_telegram_topic;
ALTER TABLE conversations DROP COLUMN telegram_topic_closed;
ALTER TABLE conversations DROP COLUMN telegram_topic_id;
ALTER TABLE visitors DROP COLUMN page_url;
DROP TABLE telegram_configs;
