DROP INDEX outbox_conversation;
ALTER TABLE outbox DROP COLUMN conversation_id;
DROP TRIGGER audit_log_no_delete;
DROP TRIGGER audit_log_no_update;
DROP TABLE audit_log;
DROP TABLE audit_purge_gate;
