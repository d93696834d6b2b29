"""The AWS control planes moto serves, hosted in their own process: the WSGI server,
SigV4 + IAM on every request, the fast lane for DynamoDB's hot calls and the fixes that keep
DynamoDB's semantics."""
