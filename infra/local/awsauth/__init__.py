"""AWS request authentication and authorisation, shared by every local service: SigV4
verification, IAM policy evaluation, the credential store and the minting of temporary
credentials."""
