"""A local stand-in for the AWS IoT Greengrass v2 nucleus's IPC: event stream RPC on a Unix
socket."""
