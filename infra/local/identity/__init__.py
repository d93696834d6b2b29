"""Amazon Cognito Identity (developer-authenticated identities, OpenID tokens,
GetCredentialsForIdentity) and the STS calls the stack needs."""
