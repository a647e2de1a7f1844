DROP TABLE outbox_backlog;
