"""API Gateway's data plane for the template's REST API: SigV4 + IAM authorisation,
Lambda proxy integration, throttling and gateway responses."""
