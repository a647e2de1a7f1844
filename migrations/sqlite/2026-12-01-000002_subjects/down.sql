ALTER TABLE visitors DROP COLUMN email;
ALTER TABLE visitors DROP COLUMN name;
ALTER TABLE conversations DROP COLUMN telegram_topic_name;
ALTER TABLE conversations DROP COLUMN subject;
