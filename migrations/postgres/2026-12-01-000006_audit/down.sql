DROP INDEX outbox_conversation;
ALTER TABLE outbox DROP COLUMN conversation_id;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE audit_purge_gate;
