"""The composition root: :class:`LocalStack` reads the CloudFormation template, starts
every service below and writes the developer's env file. Nothing else imports it."""
