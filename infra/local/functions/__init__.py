"""AWS Lambda, locally: a worker process per concurrent invocation, reserved and
account concurrency, and the DynamoDB Streams event-source mappings (stream pumps)."""
