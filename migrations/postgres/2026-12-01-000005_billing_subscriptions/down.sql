DROP INDEX billing_events_received;
DROP TABLE billing_events;
DROP INDEX billing_subscriptions_grace;
DROP INDEX billing_subscriptions_customer;
DROP INDEX billing_subscriptions_subscription;
DROP TABLE billing_subscriptions;
