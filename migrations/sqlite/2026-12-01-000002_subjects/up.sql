-- Conversation subjects and what visitors say about themselves. A conversation's
-- Telegram topic is named after its subject, else after the visitor's name and email.
ALTER TABLE conversations ADD COLUMN subject TEXT NULL;
-- The name the conversation's topic was last given (created or renamed), so that a
-- rename that is already applied makes no call.
ALTER TABLE conversations ADD COLUMN telegram_topic_name TEXT NULL;
ALTER TABLE visitors ADD COLUMN name TEXT NULL;
ALTER TABLE visitors ADD COLUMN email TEXT NULL;
