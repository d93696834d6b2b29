"""One acceptance suite, any stack: the end-to-end guarantees against the local stack (the
default) or a stack deployed with ``tidings deploy`` (``--stack NAME --region R``)."""
