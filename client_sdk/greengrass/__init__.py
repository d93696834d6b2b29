"""A Greengrass v2 component that keeps a core device's Tidings channels in a local file.

The component (``python3 -m client_sdk.greengrass.component``, declared by this folder's
``recipe.yaml``) is a Tidings client with the Greengrass transport
(:class:`~client_sdk.GreengrassCore`): pushes through the nucleus's IPC
(``SubscribeToIoTCore``), catch-up through the channels API signed with the token exchange
service's credentials. It applies each change once and in order to a JSON-lines journal
(:class:`ChangeJournal`) that other components read, and resumes after a restart from the
cursor the journal holds.
"""

from client_sdk.greengrass.journal import ChangeJournal

__all__ = ["ChangeJournal"]
