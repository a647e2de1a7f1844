DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE visitors;
DROP TABLE api_keys;
DROP TABLE tenants;
