DROP TABLE telegram_topic_bots;
DROP TABLE telegram_relays;
