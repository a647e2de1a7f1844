DROP TABLE billing_checkouts;
DROP TABLE billing_customers;
